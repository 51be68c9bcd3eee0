-- Named queries of the SQLite store. Each starts with a "-- name:" line.

-- name: insert_message
INSERT INTO messages (
    seq, id, sender, recipient, body, segments, lane, status, accepted, reason,
    provider_code, provider_id, attempt_id, duplicate_of, idempotency_key, fingerprint,
    accepted_at, expires_at, send_started_at, updated_at, campaign_id, "trigger"
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: insert_event
INSERT INTO events (message_id, at, status, reason, provider_code, source, applied, detail)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: apply_transition
UPDATE messages SET
    status = ?, reason = ?, provider_code = ?, updated_at = ?,
    provider_id = COALESCE(?, provider_id),
    attempt_id = COALESCE(?, attempt_id),
    send_started_at = COALESCE(?, send_started_at)
WHERE id = ?;

-- name: max_seq
SELECT COALESCE(MAX(seq), 0) FROM messages;

-- name: get
SELECT * FROM messages WHERE id = ?;

-- name: by_idempotency_key
SELECT * FROM messages WHERE idempotency_key = ?;

-- name: by_idempotency_keys
SELECT * FROM messages WHERE idempotency_key IN (SELECT value FROM json_each(?));

-- name: by_provider_id
SELECT * FROM messages WHERE provider_id = ?;

-- name: queued_ahead
SELECT COUNT(*) FROM messages
WHERE sender = ? AND status = 'Queued' AND (lane < ? OR (lane = ? AND seq < ?));

-- name: numbers
SELECT n.number, s.next_slot_at, COALESCE(s.paused, 0), COALESCE(q.depth, 0)
FROM (
    SELECT number FROM senders
    UNION SELECT DISTINCT sender FROM messages WHERE status = 'Queued'
) AS n
LEFT JOIN senders AS s ON s.number = n.number
LEFT JOIN (
    SELECT sender, COUNT(*) AS depth FROM messages WHERE status = 'Queued' GROUP BY sender
) AS q ON q.sender = n.number
ORDER BY n.number;

-- name: set_next_slot
-- A next slot only moves later: a slow send's record that commits after a later one's
-- must not bring the number's slot back.
INSERT INTO senders (number, next_slot_at) VALUES (?, ?)
ON CONFLICT (number) DO UPDATE
SET next_slot_at = MAX(COALESCE(next_slot_at, 0), excluded.next_slot_at);

-- name: set_paused
INSERT INTO senders (number, paused) VALUES (?, ?)
ON CONFLICT (number) DO UPDATE SET paused = excluded.paused;

-- name: next_expiry
SELECT MIN(expires_at) FROM messages WHERE status = 'Queued';

-- name: expired
SELECT * FROM messages WHERE status = 'Queued' AND expires_at <= ? ORDER BY expires_at LIMIT ?;

-- name: in_status
SELECT * FROM messages WHERE status = ? ORDER BY seq LIMIT ?;

-- name: history
SELECT message_id, at, status, reason, provider_code, source, applied, detail
FROM events WHERE message_id = ? ORDER BY id;

-- name: find
SELECT * FROM (
    SELECT * FROM messages WHERE recipient = ?1
    UNION ALL
    SELECT * FROM messages WHERE sender = ?1 AND status IN ('Receiving', 'Received')
)
ORDER BY seq DESC LIMIT ?2;

-- name: counts
SELECT status, COUNT(*) FROM messages GROUP BY status;

-- name: accepted_since
SELECT * FROM messages WHERE accepted = 1 AND accepted_at >= ? ORDER BY seq;

-- name: heads
SELECT m.* FROM json_each(?) AS s
JOIN messages AS m ON m.seq IN (
    SELECT q.seq FROM messages AS q
    WHERE q.sender = s.value AND q.status = 'Queued'
    ORDER BY q.lane, q.seq LIMIT ?
)
ORDER BY m.sender, m.lane, m.seq;

-- name: insert_call
INSERT INTO calls (
    seq, id, account, sender, recipient, script, script_name, lane, status, reason,
    provider_code, provider_id, attempt_id, placed_at, answered_by, script_done,
    idempotency_key, fingerprint, "trigger", accepted_at, updated_at, campaign_id, expires_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: insert_call_event
INSERT INTO call_events (
    call_id, at, status, result, step, reason, provider_code, source, applied, detail
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: update_call
-- The call's projection as the caller judged it: its mutable columns are replaced.
UPDATE calls SET
    status = ?, reason = ?, provider_code = ?, provider_id = ?, attempt_id = ?,
    placed_at = ?, answered_by = ?, script_done = ?, updated_at = ?
WHERE id = ?;

-- name: set_call_slot
-- Like a number's next slot, an account's only moves later.
INSERT INTO call_slots (account, next_slot_at) VALUES (?, ?)
ON CONFLICT (account) DO UPDATE
SET next_slot_at = MAX(next_slot_at, excluded.next_slot_at);

-- name: call_max_seq
SELECT COALESCE(MAX(seq), 0) FROM calls;

-- name: get_call
SELECT * FROM calls WHERE id = ?;

-- name: call_by_provider_id
SELECT * FROM calls WHERE provider_id = ?;

-- name: call_by_idempotency_key
SELECT * FROM calls WHERE idempotency_key = ?;

-- name: call_history
SELECT call_id, at, status, result, step, reason, provider_code, source, applied, detail
FROM call_events WHERE call_id = ? ORDER BY id;

-- name: calls_in_status
SELECT * FROM calls WHERE status IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ?;

-- name: find_calls
SELECT * FROM calls WHERE recipient = ? ORDER BY seq DESC LIMIT ?;

-- name: call_counts
SELECT status, COUNT(*) FROM calls GROUP BY status;

-- name: call_slots
SELECT account, next_slot_at FROM call_slots ORDER BY account;

-- name: add_voice_link
INSERT INTO voice_links (token, message_id, campaign_id, message, created_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (token) DO NOTHING;

-- name: record_play
INSERT INTO link_plays (token, at) VALUES (?, ?);

-- Engagement metrics (dispatcher/metrics.py counts the rows). Every query takes the
-- time range [?1, ?2) and the filters ?3 campaign, ?4 sender and ?5-?6 the range of
-- the triggers of one automation (NULL: any).

-- name: engagement_texts
-- The applied, counted events of texts; "taken" marks a text's first event among
-- those that say the carrier took it (it is Sent there: a receipt can beat the
-- acknowledgement). Reads events_metrics (the WHERE repeats its condition).
SELECT e.message_id, e.at, e.status, e.reason, m.campaign_id, m.sender, m."trigger",
    e.status IN ('Sent', 'Delivered', 'Undelivered', 'Unreachable', 'Completed')
    AND NOT EXISTS (
        SELECT 1 FROM events AS p
        WHERE p.message_id = e.message_id AND p.id < e.id AND p.applied = 1
        AND p.status IN ('Sent', 'Delivered', 'Undelivered', 'Unreachable', 'Completed')
    ) AS taken
FROM events AS e JOIN messages AS m ON m.id = e.message_id
WHERE e.applied = 1
    AND e.status IN ('Sent', 'Delivered', 'Undelivered', 'Unreachable', 'Failed', 'Completed')
    AND e.at >= ?1 AND e.at < ?2
    AND (?3 IS NULL OR m.campaign_id = ?3) AND (?4 IS NULL OR m.sender = ?4)
    AND (?5 IS NULL OR (m."trigger" >= ?5 AND m."trigger" < ?6));

-- name: engagement_calls
-- Every result of a call, and its applied, counted statuses.
SELECT e.call_id, e.at, e.status, e.result, e.applied, e.reason,
    c.campaign_id, c.sender, c."trigger"
FROM call_events AS e JOIN calls AS c ON c.id = e.call_id
WHERE e.at >= ?1 AND e.at < ?2
    AND (e.result IS NOT NULL OR (e.applied = 1 AND e.status IN (
        'Queued', 'Ringing', 'Answered', 'No answer', 'Hangup', 'Busy', 'Failed', 'Canceled',
        'Completed'
    )))
    AND (?3 IS NULL OR c.campaign_id = ?3) AND (?4 IS NULL OR c.sender = ?4)
    AND (?5 IS NULL OR (c."trigger" >= ?5 AND c."trigger" < ?6));

-- name: engagement_plays
-- Plays of voice links, for the text carrying the link (the link's campaign first).
SELECT v.message_id, p.at, COALESCE(v.campaign_id, m.campaign_id) AS campaign_id,
    m.sender, m."trigger"
FROM link_plays AS p
JOIN voice_links AS v ON v.token = p.token
LEFT JOIN messages AS m ON m.id = v.message_id
WHERE p.at >= ?1 AND p.at < ?2
    AND (?3 IS NULL OR COALESCE(v.campaign_id, m.campaign_id) = ?3)
    AND (?4 IS NULL OR m.sender = ?4)
    AND (?5 IS NULL OR (m."trigger" >= ?5 AND m."trigger" < ?6));

-- name: engagement_made
-- Texts and calls automations made (trigger automation:<rule>:<source id>, in the
-- range [?3, ?4)), accepted in [?1, ?2). Their sources are read next.
SELECT 'text' AS channel, id, accepted_at, "trigger" FROM messages
WHERE "trigger" >= ?3 AND "trigger" < ?4 AND accepted_at >= ?1 AND accepted_at < ?2
UNION ALL
SELECT 'voice', id, accepted_at, "trigger" FROM calls
WHERE "trigger" >= ?3 AND "trigger" < ?4 AND accepted_at >= ?1 AND accepted_at < ?2;

-- name: engagement_sources
-- The texts and calls of a JSON list of ids: what an Activity is attributed to, and
-- the channel it counts under (the table holding the source).
SELECT 'text' AS channel, id, sender, campaign_id FROM messages
WHERE id IN (SELECT value FROM json_each(?1))
UNION ALL
SELECT 'voice', id, sender, campaign_id FROM calls WHERE id IN (SELECT value FROM json_each(?1));

-- name: store_probe
INSERT INTO store_probe (id, at) VALUES (1, ?)
ON CONFLICT (id) DO UPDATE SET at = excluded.at;
