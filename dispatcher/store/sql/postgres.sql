-- Named queries of the PostgreSQL store. Each starts with a "-- name:" line.

-- name: migration_lock
-- Held while the schema is brought up to date: of workers started at the same moment,
-- one migrates and the others wait here, then find nothing left to do.
SELECT pg_advisory_lock(7036811740212253505);

-- name: migration_unlock
SELECT pg_advisory_unlock(7036811740212253505);

-- name: schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- name: schema_versions
SELECT version FROM schema_migrations ORDER BY version;

-- name: schema_migrated
INSERT INTO schema_migrations (version) VALUES ($1);
