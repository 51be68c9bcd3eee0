-- Named queries of the PostgreSQL store: texts, their events and each number's queue
-- (dispatcher/store/postgres/texts.py). A number's next slot and pause flag live in its
-- pacing key's row (pacing_keys, migration 0002).

-- name: insert_messages
-- Many texts in one statement, each parameter an array of one column; seq is taken in
-- the order given.
INSERT INTO messages (
    id, sender, recipient, body, segments, lane, status, accepted, reason, provider_code,
    provider_id, attempt_id, duplicate_of, idempotency_key, fingerprint, accepted_at,
    expires_at, send_started_at, updated_at, campaign_id, "trigger"
)
SELECT id, sender, recipient, body, segments, lane, status, accepted, reason, provider_code,
    provider_id, attempt_id, duplicate_of, idempotency_key, fingerprint, accepted_at,
    expires_at, send_started_at, updated_at, campaign_id, "trigger"
FROM unnest(
    $1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::INTEGER[], $6::SMALLINT[],
    $7::TEXT[], $8::BOOLEAN[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[],
    $13::TEXT[], $14::TEXT[], $15::TEXT[], $16::TIMESTAMPTZ[], $17::TIMESTAMPTZ[],
    $18::TIMESTAMPTZ[], $19::TIMESTAMPTZ[], $20::TEXT[], $21::TEXT[]
) WITH ORDINALITY AS m(
    id, sender, recipient, body, segments, lane, status, accepted, reason, provider_code,
    provider_id, attempt_id, duplicate_of, idempotency_key, fingerprint, accepted_at,
    expires_at, send_started_at, updated_at, campaign_id, "trigger", i
)
ORDER BY i
RETURNING id, seq;

-- name: insert_events
-- Events in the order given (their id is the history's order), one array per column.
INSERT INTO events (message_id, at, status, reason, provider_code, source, applied, detail)
SELECT message_id, at, status, reason, provider_code, source, applied, detail
FROM unnest(
    $1::TEXT[], $2::TIMESTAMPTZ[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[],
    $7::BOOLEAN[], $8::TEXT[]
) WITH ORDINALITY AS e(message_id, at, status, reason, provider_code, source, applied,
                       detail, i)
ORDER BY i;

-- name: apply_transition
-- An applied event's change of its text (run once per event, in order: one text may
-- change twice in one write).
UPDATE messages SET
    status = $1, reason = $2, provider_code = $3, updated_at = $4,
    provider_id = COALESCE($5, provider_id),
    attempt_id = COALESCE($6, attempt_id),
    send_started_at = COALESCE($7, send_started_at)
WHERE id = $8;

-- name: fence_check
-- The fenced steps of a write whose text is still in the status (and, when given, the
-- lease's epoch) they expect; those rows stay locked until the write commits. Epoch 0
-- names a text that no lease started (its epoch NULL; epochs start at 1).
SELECT m.id FROM messages AS m
JOIN unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[]) AS f(id, expected, epoch) ON m.id = f.id
WHERE m.status = f.expected AND (f.epoch IS NULL OR COALESCE(m.epoch, 0) = f.epoch)
ORDER BY m.id
FOR UPDATE OF m;

-- name: senders_of
SELECT id, sender FROM messages WHERE id = ANY($1::TEXT[]);

-- name: set_next_slots
-- A next slot only moves later: a slow send's record that commits after a later one's
-- must not bring the number's slot back. Keys in order, so concurrent writes lock them
-- in one order.
INSERT INTO pacing_keys (key, next_slot_at)
SELECT key, at FROM unnest($1::TEXT[], $2::TIMESTAMPTZ[]) AS s(key, at) ORDER BY key
ON CONFLICT (key) DO UPDATE
SET next_slot_at = GREATEST(pacing_keys.next_slot_at, excluded.next_slot_at);

-- name: set_paused
INSERT INTO pacing_keys (key, paused) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET paused = excluded.paused;

-- name: numbers
-- Every number with a queue, a next slot or a pause flag, with the depth of its queue.
SELECT n.key AS number, p.next_slot_at, COALESCE(p.paused, false) AS paused,
    COALESCE(q.depth, 0) AS depth
FROM (
    SELECT key FROM pacing_keys WHERE next_slot_at IS NOT NULL OR paused
    UNION SELECT DISTINCT sender FROM messages WHERE status = 'Queued'
) AS n
LEFT JOIN pacing_keys AS p ON p.key = n.key
LEFT JOIN (
    SELECT sender, COUNT(*) AS depth FROM messages WHERE status = 'Queued' GROUP BY sender
) AS q ON q.sender = n.key
ORDER BY n.key;

-- name: heads
-- The first $2 Queued texts of each number of $1, each read from the queue's index.
SELECT m.* FROM unnest($1::TEXT[]) AS s(sender)
CROSS JOIN LATERAL (
    SELECT * FROM messages AS q
    WHERE q.sender = s.sender AND q.status = 'Queued'
    ORDER BY q.lane, q.seq LIMIT $2
) AS m
ORDER BY m.sender, m.lane, m.seq;

-- name: queued_ahead
SELECT COUNT(*) FROM messages
WHERE sender = $1 AND status = 'Queued' AND (lane < $2 OR (lane = $2 AND seq < $3));

-- name: next_expiry
SELECT MIN(expires_at) FROM messages WHERE status = 'Queued';

-- name: expired
SELECT * FROM messages WHERE status = 'Queued' AND expires_at <= $1
ORDER BY expires_at LIMIT $2;

-- name: in_status
SELECT * FROM messages WHERE status = $1 ORDER BY seq LIMIT $2;

-- name: get
SELECT * FROM messages WHERE id = $1;

-- name: by_provider_id
SELECT * FROM messages WHERE provider_id = $1;

-- name: by_idempotency_key
SELECT * FROM messages WHERE idempotency_key = $1;

-- name: by_idempotency_keys
SELECT * FROM messages WHERE idempotency_key = ANY($1::TEXT[]);

-- name: history
SELECT message_id, at, status, reason, provider_code, source, applied, detail
FROM events WHERE message_id = $1 ORDER BY id;

-- name: find
-- Texts to a contact and the contact's own texts, newest first.
SELECT * FROM (
    SELECT * FROM messages WHERE recipient = $1
    UNION ALL
    SELECT * FROM messages WHERE sender = $1 AND status IN ('Receiving', 'Received')
) AS m
ORDER BY seq DESC LIMIT $2;

-- name: counts
SELECT status, COUNT(*) AS n FROM messages GROUP BY status;

-- name: accepted_since
SELECT * FROM messages WHERE accepted AND accepted_at >= $1 ORDER BY seq;
