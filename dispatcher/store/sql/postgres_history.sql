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
