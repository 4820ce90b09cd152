-- fleetpool-lint: engine=postgresql
-- A PostgreSQL script (see README.md beside this file).
CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, note text);
SET search_path TO app, public; -- expect: rds-proxy, pgbouncer
INSERT INTO orders (note) VALUES ('SET x; LISTEN y');
SELECT setval('orders_id_seq', 1000); -- expect: rds-proxy
CREATE TEMPORARY TABLE import_rows (line text); -- expect: fleetpool, rds-proxy, pgbouncer
DO $$ BEGIN PERFORM 1; END $$; -- expect: fleetpool
DISCARD ALL; -- expect: rds-proxy
BEGIN;
SET LOCAL lock_timeout = '1s';
SELECT pg_advisory_xact_lock(1);
COMMIT;
