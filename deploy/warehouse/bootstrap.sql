-- The application login and the warehouse database on the compose deployment's primary, as the administrator: what
-- `kho warehouse up` does for the embedded nodes (kho.warehouse.logins.ensure_roles and ensure_database), for the
-- warehouse-init service. Patroni's bootstrap already made the administrator and the replication role from
-- PATRONI_SUPERUSER_PASSWORD and PATRONI_REPLICATION_PASSWORD. Idempotent: run at every `docker compose up`.
-- psql variables: app_user, database (set by docker-compose.yml); the password from KHO_PG_PASSWORD.
\getenv app_password KHO_PG_PASSWORD
\if :{?app_password}
\else
  \warn 'KHO_PG_PASSWORD is not set: set it in .env'
  SELECT 1 / 0 AS kho_pg_password_missing;
\endif
SET password_encryption = 'scram-sha-256';
SELECT format('CREATE ROLE %I', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD %L',
              :'app_user', :'app_password') \gexec
SELECT format('GRANT %I TO %I', predefined, :'app_user')
  FROM unnest(ARRAY['pg_monitor', 'pg_checkpoint']) AS predefined \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'database', :'app_user') \gexec
