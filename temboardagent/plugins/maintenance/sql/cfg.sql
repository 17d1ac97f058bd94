SELECT pg_catalog.current_setting('block_size')::int8 AS bs
