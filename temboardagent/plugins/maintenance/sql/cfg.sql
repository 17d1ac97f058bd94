SELECT pg_catalog.current_setting('block_size')::bigint AS bs
