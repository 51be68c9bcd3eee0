-- The single-worker guard (guard.py): one service per database, until the delivery
-- engine is driven by the leases. A session-level advisory lock of the two-key space,
-- class 18, held by a connection of the service's own for its whole life.

-- name: guard_take
SELECT pg_try_advisory_lock(18, 0);

-- name: guard_record
INSERT INTO service_guard (id, backend_pid, host, pid, home, started_at, taken_at)
VALUES (TRUE, pg_backend_pid(), $1, $2, $3, $4, clock_timestamp())
ON CONFLICT (id) DO UPDATE
SET backend_pid = excluded.backend_pid, host = excluded.host, pid = excluded.pid,
    home = excluded.home, started_at = excluded.started_at, taken_at = excluded.taken_at;

-- name: guard_holder
-- The server process that holds the lock in this database, and who it said it is (no
-- row: a session that has not written it yet, or not a dispatcher service).
SELECT l.pid AS backend_pid, g.host, g.pid, g.home, g.started_at
FROM pg_locks l
LEFT JOIN service_guard g ON g.backend_pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 18 AND l.objid = 0
  AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());

-- name: guard_check
SELECT 1;
