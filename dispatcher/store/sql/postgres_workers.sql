-- The view across workers (dispatcher/store/postgres/workers.py): each worker with its
-- heartbeat, the keys it holds and the texts started from them in the last minute.

-- name: workers_view
-- $1: the lease, in seconds (a worker is live while its heartbeat is younger). The
-- sends of a key in the last minute are read on messages_sender_started (migration
-- 0014): at most about 60 entries per key, one send a second.
SELECT w.id, w.address, w.started_at,
       GREATEST(EXTRACT(EPOCH FROM now() - w.heartbeat_at), 0)::FLOAT8 AS heartbeat_age,
       w.heartbeat_at > now() - make_interval(secs => $1) AS live,
       COUNT(p.key) AS keys, COALESCE(SUM(s.n), 0)::BIGINT AS sent_last_minute
FROM workers AS w
LEFT JOIN pacing_keys AS p ON p.owner = w.id AND p.lease_expires_at > now()
LEFT JOIN LATERAL (
    SELECT COUNT(*) AS n FROM messages AS m
    WHERE m.sender = p.key AND m.send_started_at > now() - interval '60 seconds'
) AS s ON true
GROUP BY w.id
ORDER BY w.id;

-- name: key_owners
-- The worker holding each of the keys $1 under a lease that has not lapsed: one probe
-- of the primary key per key asked (a filter on key = ANY($1) would compare every row
-- with every key asked).
SELECT p.key, p.owner FROM unnest($1::TEXT[]) AS k(key)
JOIN pacing_keys AS p ON p.key = k.key
WHERE p.owner IS NOT NULL AND p.lease_expires_at > now();
