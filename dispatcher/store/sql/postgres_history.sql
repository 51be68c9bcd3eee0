-- Named queries of the PostgreSQL store for the commit order of the event histories
-- (dispatcher/store/postgres/history.py).

-- Each history's last final event (written by a transaction older than every one still
-- in flight: nothing can commit before it any more) and its last committed event, as
-- [tx, id] (NULL for an empty history). One statement: one snapshot for all of it.
-- name: history_tip
WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::TEXT::BIGINT AS xmin)
SELECT
    (SELECT ARRAY[e.tx, e.id] FROM events AS e WHERE e.tx < h.xmin
     ORDER BY e.tx DESC, e.id DESC LIMIT 1) AS texts,
    (SELECT ARRAY[e.tx, e.id] FROM call_events AS e WHERE e.tx < h.xmin
     ORDER BY e.tx DESC, e.id DESC LIMIT 1) AS calls,
    (SELECT ARRAY[e.tx, e.id] FROM email_events AS e WHERE e.tx < h.xmin
     ORDER BY e.tx DESC, e.id DESC LIMIT 1) AS emails,
    (SELECT ARRAY[e.tx, e.id] FROM events AS e
     ORDER BY e.tx DESC, e.id DESC LIMIT 1) AS texts_committed,
    (SELECT ARRAY[e.tx, e.id] FROM call_events AS e
     ORDER BY e.tx DESC, e.id DESC LIMIT 1) AS calls_committed,
    (SELECT ARRAY[e.tx, e.id] FROM email_events AS e
     ORDER BY e.tx DESC, e.id DESC LIMIT 1) AS emails_committed
FROM horizon AS h;

-- A database restored from a dump into another cluster keeps the transaction ids of
-- the old one, which may lie in this cluster's future: its new events would then be
-- placed before the old ones, behind every cursor. Checked at every start, under a lock
-- of its own (the two-key advisory locks of class 17), and rebased once (history.py).
-- name: histories_lock
SELECT pg_advisory_xact_lock(17, 0);

-- name: histories_moved
SELECT GREATEST((SELECT max(tx) FROM events), (SELECT max(tx) FROM call_events),
                (SELECT max(tx) FROM email_events))
       >= pg_snapshot_xmax(pg_current_snapshot())::TEXT::BIGINT;

-- name: histories_cursors
SELECT 'automation' AS kind, text_event, call_event, email_event FROM automation_cursor
UNION ALL
SELECT 'callback', text_event, call_event, email_event FROM callback_cursor;

-- Where a cursor at (tx, id) goes once every old event has tx 0: just before the first
-- event it had not passed (the events it had passed after that are read again, and
-- found to be done), or, when it had passed them all, after the last.
-- name: rebased_text_place
SELECT COALESCE((SELECT min(id) - 1 FROM events WHERE (tx, id) > ($1, $2)),
                (SELECT COALESCE(max(id), 0) FROM events));

-- name: rebased_call_place
SELECT COALESCE((SELECT min(id) - 1 FROM call_events WHERE (tx, id) > ($1, $2)),
                (SELECT COALESCE(max(id), 0) FROM call_events));

-- name: rebased_email_place
SELECT COALESCE((SELECT min(id) - 1 FROM email_events WHERE (tx, id) > ($1, $2)),
                (SELECT COALESCE(max(id), 0) FROM email_events));

-- name: rebase_automation_cursor
UPDATE automation_cursor SET text_event = $1, call_event = $2, email_event = $3;

-- name: rebase_callback_cursor
UPDATE callback_cursor SET text_event = $1, call_event = $2, email_event = $3;

-- Every old event at tx 0, in id order; the places kept with the callbacks as well.
-- name: rebase_histories
UPDATE callback_subscriptions SET last_event = mod(last_event, 9223372036854775808);
UPDATE callback_outbox SET event = mod(event, 9223372036854775808);
UPDATE events SET tx = 0 WHERE tx <> 0;
UPDATE call_events SET tx = 0 WHERE tx <> 0;
UPDATE email_events SET tx = 0 WHERE tx <> 0;
