-- Named queries of the PostgreSQL store: what the operator's status reads.

-- name: probe
INSERT INTO store_probe (id, at) VALUES (1, clock_timestamp())
ON CONFLICT (id) DO UPDATE SET at = excluded.at;

-- name: queued_by_lane
-- Texts queued, by lane (the partial queue index holds exactly the queued texts).
SELECT lane, COUNT(*) AS n FROM messages WHERE status = 'Queued' GROUP BY lane;

-- name: recent_errors
-- The texts that most recently ended in error, newest first, from the partial index of
-- their error events (migration 0009): the read is as long as its limit.
SELECT m.* FROM events AS e JOIN messages AS m ON m.id = e.message_id
WHERE e.applied AND e.status IN ('Failed', 'Undelivered', 'Unreachable')
ORDER BY e.id DESC LIMIT $1;
