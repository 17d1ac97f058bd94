-- English messages on the operation's connection, so that outcome.py recognizes what
-- PostgreSQL skipped; lc_messages is a superuser setting: other roles keep the server's.
SELECT pg_catalog.set_config('lc_messages'::pg_catalog.text, 'C'::pg_catalog.text, false)
WHERE pg_catalog.current_setting('is_superuser'::pg_catalog.text)
      = 'on'::pg_catalog.text
