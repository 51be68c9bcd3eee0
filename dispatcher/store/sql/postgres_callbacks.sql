-- Named queries of the PostgreSQL store for status callbacks.

-- name: callback_subscription
SELECT * FROM callback_subscriptions WHERE channel = $1 AND source_id = $2;

-- name: upsert_callback_subscription
INSERT INTO callback_subscriptions (channel, source_id, url, created_at, last_event, last_seq)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (channel, source_id) DO UPDATE SET last_event = excluded.last_event,
                                               last_seq = excluded.last_seq;

-- name: insert_callback
INSERT INTO callback_outbox (
    channel, source_id, seq, event, url, status, reason, error_code, at, created_at, state,
    next_at, attempts
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13);

-- name: update_callback
UPDATE callback_outbox SET state = $1, next_at = $2, attempts = $3 WHERE id = $4;

-- name: callback_cursor
SELECT text_event, call_event, email_event FROM callback_cursor WHERE id = 1;

-- name: set_callback_cursor
INSERT INTO callback_cursor (id, text_event, call_event, email_event) VALUES (1, $1, $2, $3)
ON CONFLICT (id) DO UPDATE SET text_event = excluded.text_event,
                               call_event = excluded.call_event,
                               email_event = excluded.email_event;

-- name: any_callback_subscription
SELECT EXISTS (SELECT 1 FROM callback_subscriptions);

-- The status changes of subscribed items after a place and up to another, in commit
-- order (tx, id; history.py), each event looked up in the subscriptions.
-- name: subscribed_text_changes
SELECT e.tx, e.id, e.message_id AS source_id, e.at, e.status, e.reason, e.provider_code,
       s.url, s.created_at, s.last_event, s.last_seq
FROM events AS e JOIN callback_subscriptions AS s
  ON s.channel = 'text' AND s.source_id = e.message_id
WHERE (e.tx, e.id) > ($1, $2) AND (e.tx, e.id) <= ($3, $4) AND e.applied
ORDER BY e.tx, e.id LIMIT $5;

-- name: subscribed_call_changes
SELECT e.tx, e.id, e.call_id AS source_id, e.at, e.status, e.reason, e.provider_code,
       s.url, s.created_at, s.last_event, s.last_seq
FROM call_events AS e JOIN callback_subscriptions AS s
  ON s.channel = 'voice' AND s.source_id = e.call_id
WHERE (e.tx, e.id) > ($1, $2) AND (e.tx, e.id) <= ($3, $4) AND e.applied
  AND e.status IS NOT NULL
ORDER BY e.tx, e.id LIMIT $5;

-- name: subscribed_email_changes
SELECT e.tx, e.id, e.email_id AS source_id, e.at, e.status, e.reason, e.provider_code,
       s.url, s.created_at, s.last_event, s.last_seq
FROM email_events AS e JOIN callback_subscriptions AS s
  ON s.channel = 'email' AND s.source_id = e.email_id
WHERE (e.tx, e.id) > ($1, $2) AND (e.tx, e.id) <= ($3, $4) AND e.applied
  AND e.status IS NOT NULL
ORDER BY e.tx, e.id LIMIT $5;

-- One item's status changes, oldest first.
-- name: text_status_changes
SELECT tx, id, message_id AS source_id, at, status, reason, provider_code FROM events
WHERE message_id = $1 AND applied ORDER BY tx, id;

-- name: call_status_changes
SELECT tx, id, call_id AS source_id, at, status, reason, provider_code FROM call_events
WHERE call_id = $1 AND applied AND status IS NOT NULL ORDER BY tx, id;

-- name: email_status_changes
SELECT tx, id, email_id AS source_id, at, status, reason, provider_code FROM email_events
WHERE email_id = $1 AND applied AND status IS NOT NULL ORDER BY tx, id;

-- The pending deliveries that go next: each item's first, earliest due first.
-- name: callback_heads
SELECT o.* FROM callback_outbox AS o
WHERE o.state = 'pending' AND NOT EXISTS (
    SELECT 1 FROM callback_outbox AS p
    WHERE p.state = 'pending' AND p.channel = o.channel AND p.source_id = o.source_id
      AND p.seq < o.seq)
ORDER BY o.next_at, o.id LIMIT $1;

-- name: callbacks_of
SELECT * FROM callback_outbox WHERE channel = $1 AND source_id = $2 ORDER BY seq;

-- name: callback_backlog
SELECT url, COUNT(*) FROM callback_outbox WHERE state = 'pending' GROUP BY url;
