-- Whether the agent's role may connect to database <dbname> and owns it (superusers
-- own everything), with the owner's name. No row: unknown database.
SELECT r.rolname::pg_catalog.text AS rolname,
       pg_catalog.has_database_privilege(d.oid, 'CONNECT'::pg_catalog.text) AS can_connect,
       pg_catalog.pg_has_role(d.datdba, 'USAGE'::pg_catalog.text) AS database_owner,
       pg_catalog.pg_get_userbyid(d.datdba)::pg_catalog.text AS owner
FROM pg_catalog.pg_database AS d
CROSS JOIN pg_catalog.pg_roles AS r
WHERE d.datname = %(dbname)s::pg_catalog.name
  AND r.rolname = CURRENT_USER
