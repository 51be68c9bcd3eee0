-- Named queries of the PostgreSQL store for automation runs, their rules and the
-- history they follow.

-- New runs, one array per column; the keys that were new come back (a run exists once,
-- whoever else writes it at the same moment).
-- name: insert_runs
INSERT INTO automation_runs (
    rule, source_id, result, due_at, state, engagement_id, detail, created_at, contact, sender
)
SELECT rule, source_id, result, due_at, state, engagement_id, detail, due_at, contact, sender
FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TIMESTAMPTZ[], $5::TEXT[], $6::TEXT[],
            $7::TEXT[], $8::TEXT[], $9::TEXT[])
    AS n (rule, source_id, result, due_at, state, engagement_id, detail, contact, sender)
ON CONFLICT (rule, source_id, result) DO NOTHING
RETURNING rule, source_id, result;

-- name: due_runs
SELECT * FROM automation_runs WHERE state = 'due' AND due_at <= $1
ORDER BY due_at, seq LIMIT $2;

-- name: finish_run
UPDATE automation_runs SET state = $1, engagement_id = $2, detail = $3
WHERE rule = $4 AND source_id = $5 AND result = $6;

-- name: list_runs
SELECT * FROM automation_runs ORDER BY created_at DESC, seq DESC LIMIT $1;

-- name: insert_rule
INSERT INTO automation_rules (name, rule, created_at) VALUES ($1, $2, $3);

-- name: delete_rule
DELETE FROM automation_rules WHERE name = $1;

-- name: list_rules
SELECT name, rule FROM automation_rules ORDER BY created_at, name;

-- name: automation_cursor
SELECT text_event, call_event, email_event FROM automation_cursor WHERE id = 1;

-- name: set_automation_cursor
INSERT INTO automation_cursor (id, text_event, call_event, email_event) VALUES (1, $1, $2, $3)
ON CONFLICT (id) DO UPDATE SET text_event = excluded.text_event,
                               call_event = excluded.call_event,
                               email_event = excluded.email_event;

-- name: clear_automation_cursor
DELETE FROM automation_cursor;

-- The results after a place and up to another, in commit order (tx, id; history.py).
-- name: text_results_between
SELECT e.tx, e.id, e.message_id AS source_id, e.at, e.status, NULL AS result,
       NULL AS detail, m.recipient, m.sender, m.campaign_id
FROM events AS e JOIN messages AS m ON m.id = e.message_id
WHERE (e.tx, e.id) > ($1, $2) AND (e.tx, e.id) <= ($3, $4) AND e.applied
  AND e.status = ANY($5::TEXT[])
ORDER BY e.tx, e.id LIMIT $6;

-- name: call_results_between
SELECT e.tx, e.id, e.call_id AS source_id, e.at, e.status, e.result, e.detail,
       c.recipient, c.sender, c.campaign_id
FROM call_events AS e JOIN calls AS c ON c.id = e.call_id
WHERE (e.tx, e.id) > ($1, $2) AND (e.tx, e.id) <= ($3, $4) AND e.applied
  AND (e.status = ANY($5::TEXT[]) OR e.result = ANY($6::TEXT[]))
ORDER BY e.tx, e.id LIMIT $7;

-- name: email_results_between
SELECT e.tx, e.id, e.email_id AS source_id, e.at, e.status, e.result, NULL AS detail,
       m.recipient, m.sender, m.campaign_id
FROM email_events AS e JOIN emails AS m ON m.id = e.email_id
WHERE (e.tx, e.id) > ($1, $2) AND (e.tx, e.id) <= ($3, $4) AND e.applied
  AND (e.status = ANY($5::TEXT[]) OR e.result = ANY($6::TEXT[]))
ORDER BY e.tx, e.id LIMIT $7;
