-- Email: named queries of the SQLite store (dispatcher/store/sqlite/emails.py).

-- name: insert_email
INSERT INTO emails (
    seq, id, relay, sender, recipient, subject, text, html, lane, status, reason,
    provider_code, provider_id, attempt_id, sent_at, idempotency_key, fingerprint,
    "trigger", campaign_id, accepted_at, updated_at, track_opens, track_clicks
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: insert_email_event
-- An event of an email the store does not have is not kept (an unknown email stays
-- unknown, its history too).
INSERT INTO email_events (
    email_id, at, status, result, reason, provider_code, source, applied, detail
) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9
WHERE EXISTS (SELECT 1 FROM emails WHERE id = ?1);

-- name: update_email
-- The email's projection as the caller judged it: its mutable columns are replaced.
UPDATE emails SET
    status = ?, reason = ?, provider_code = ?, provider_id = ?, attempt_id = ?,
    sent_at = ?, updated_at = ?
WHERE id = ?;

-- name: set_email_slot
-- Like a number's next slot, a relay's only moves later.
INSERT INTO email_slots (relay, next_slot_at) VALUES (?, ?)
ON CONFLICT (relay) DO UPDATE
SET next_slot_at = MAX(next_slot_at, excluded.next_slot_at);

-- name: email_max_seq
SELECT COALESCE(MAX(seq), 0) FROM emails;

-- name: get_email
SELECT * FROM emails WHERE id = ?;

-- name: email_by_idempotency_key
SELECT * FROM emails WHERE idempotency_key = ?;

-- name: email_history
SELECT email_id, at, status, result, reason, provider_code, source, applied, detail
FROM email_events WHERE email_id = ? ORDER BY id;

-- name: emails_in_status
SELECT * FROM emails WHERE status IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ?;

-- name: find_emails
SELECT * FROM emails WHERE recipient = ? ORDER BY seq DESC LIMIT ?;

-- name: email_counts
SELECT status, COUNT(*) FROM emails GROUP BY status;

-- name: email_slots
SELECT relay, next_slot_at FROM email_slots ORDER BY relay;
