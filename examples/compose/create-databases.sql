-- The example apps' own databases, on Gatehouse's PostgreSQL server
-- (compose service `apps-db`, profile `apps`). Idempotent: it runs on every
-- `docker compose --profile apps up`, also against an existing volume.
-- Each app creates its tables itself (embedded migrations).
SELECT 'CREATE DATABASE botfactory'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'botfactory')\gexec
SELECT 'CREATE DATABASE chat'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'chat')\gexec
