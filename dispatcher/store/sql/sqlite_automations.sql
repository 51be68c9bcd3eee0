-- Named queries of the SQLite store for automation runs.

-- name: insert_run
INSERT INTO automation_runs (
    rule, source_id, result, due_at, state, engagement_id, detail, created_at, contact, sender
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (rule, source_id, result) DO NOTHING;

-- name: runs_by_key
SELECT * FROM automation_runs WHERE rule = ? AND source_id = ? AND result = ?;

-- name: due_runs
SELECT * FROM automation_runs WHERE state = 'due' AND due_at <= ?
ORDER BY due_at, rowid LIMIT ?;

-- name: finish_run
UPDATE automation_runs SET state = ?, engagement_id = ?, detail = ?
WHERE rule = ? AND source_id = ? AND result = ?;

-- name: list_runs
SELECT * FROM automation_runs ORDER BY created_at DESC, rowid DESC LIMIT ?;

-- name: insert_rule
INSERT INTO automation_rules (name, rule, created_at) VALUES (?, ?, ?);

-- name: delete_rule
DELETE FROM automation_rules WHERE name = ?;

-- name: list_rules
SELECT name, rule FROM automation_rules ORDER BY created_at, name;

-- name: automation_cursor
SELECT text_event, call_event, email_event FROM automation_cursor WHERE id = 1;

-- name: set_automation_cursor
INSERT INTO automation_cursor (id, text_event, call_event, email_event) VALUES (1, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET text_event = excluded.text_event,
                               call_event = excluded.call_event,
                               email_event = excluded.email_event;

-- name: clear_automation_cursor
DELETE FROM automation_cursor;

-- name: history_tip
SELECT (SELECT COALESCE(MAX(id), 0) FROM events), (SELECT COALESCE(MAX(id), 0) FROM call_events),
       (SELECT COALESCE(MAX(id), 0) FROM email_events);

-- The results after a cursor: a range of each history's own key, read once.
-- name: text_results_between
SELECT e.id AS seq, e.message_id AS source_id, e.at, e.status, NULL AS result,
       NULL AS detail, m.recipient, m.sender, m.campaign_id
FROM events AS e JOIN messages AS m ON m.id = e.message_id
WHERE e.id > ? AND e.id <= ? AND e.applied = 1
  AND e.status IN (SELECT value FROM json_each(?))
ORDER BY e.id LIMIT ?;

-- name: call_results_between
SELECT e.id AS seq, e.call_id AS source_id, e.at, e.status, e.result, e.detail,
       c.recipient, c.sender, c.campaign_id
FROM call_events AS e JOIN calls AS c ON c.id = e.call_id
WHERE e.id > ? AND e.id <= ? AND e.applied = 1
  AND (e.status IN (SELECT value FROM json_each(?)) OR e.result IN (SELECT value FROM json_each(?)))
ORDER BY e.id LIMIT ?;

-- name: email_results_between
SELECT e.id AS seq, e.email_id AS source_id, e.at, e.status, e.result, NULL AS detail,
       m.recipient, m.sender, m.campaign_id
FROM email_events AS e JOIN emails AS m ON m.id = e.email_id
WHERE e.id > ? AND e.id <= ? AND e.applied = 1
  AND (e.status IN (SELECT value FROM json_each(?)) OR e.result IN (SELECT value FROM json_each(?)))
ORDER BY e.id LIMIT ?;
