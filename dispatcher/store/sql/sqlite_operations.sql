-- What the operator's status and the monitoring figures read of the store.

-- name: queued_by_lane
-- Texts queued, by lane (the partial queue index holds exactly the queued texts).
SELECT lane, COUNT(*) FROM messages WHERE status = 'Queued' GROUP BY lane;

-- name: recent_errors
-- The texts that most recently ended in error, newest first, from the partial index of
-- their error events (migration 0017): the read is as long as its limit.
SELECT m.* FROM events AS e JOIN messages AS m ON m.id = e.message_id
WHERE e.applied = 1 AND e.status IN ('Failed', 'Undelivered', 'Unreachable')
ORDER BY e.id DESC LIMIT ?;
