-- Email: named queries of the PostgreSQL store (dispatcher/store/postgres/emails.py).

-- name: insert_email
INSERT INTO emails (
    id, relay, sender, recipient, subject, text, html, lane, status, reason,
    provider_code, provider_id, attempt_id, sent_at, idempotency_key, fingerprint,
    "trigger", campaign_id, accepted_at, updated_at, track_opens, track_clicks
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
          $18, $19, $20, $21, $22)
RETURNING seq;

-- name: insert_email_events
-- Events as one array per column, appended in their order. An event of an email the
-- store does not have is not kept (an unknown email stays unknown, its history too).
INSERT INTO email_events (
    email_id, at, status, result, reason, provider_code, source, applied, detail
)
SELECT e.email_id, e.at, e.status, e.result, e.reason, e.provider_code, e.source,
    e.applied, e.detail
FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::boolean[], $9::text[]) WITH ORDINALITY
    AS e (email_id, at, status, result, reason, provider_code, source, applied, detail, n)
WHERE EXISTS (SELECT 1 FROM emails AS m WHERE m.id = e.email_id)
ORDER BY e.n;

-- name: update_email
-- The email's projection as the caller judged it: its mutable columns are replaced.
UPDATE emails SET
    status = $2, reason = $3, provider_code = $4, provider_id = $5, attempt_id = $6,
    sent_at = $7, updated_at = $8
WHERE id = $1;

-- name: set_email_slot
-- Like a number's next slot, a relay's only moves later.
INSERT INTO email_slots (relay, next_slot_at) VALUES ($1, $2)
ON CONFLICT (relay) DO UPDATE
SET next_slot_at = GREATEST(email_slots.next_slot_at, excluded.next_slot_at);

-- name: get_email
SELECT * FROM emails WHERE id = $1;

-- name: email_by_idempotency_key
SELECT * FROM emails WHERE idempotency_key = $1;

-- name: email_history
SELECT email_id, at, status, result, reason, provider_code, source, applied, detail
FROM email_events WHERE email_id = $1 ORDER BY id;

-- name: emails_in_status
SELECT * FROM emails WHERE status = ANY($1::text[]) ORDER BY seq LIMIT $2;

-- name: find_emails
SELECT * FROM emails WHERE recipient = $1 ORDER BY seq DESC LIMIT $2;

-- name: email_counts
SELECT status, COUNT(*) AS n FROM emails GROUP BY status;

-- name: email_slots
SELECT relay, next_slot_at FROM email_slots ORDER BY relay;
