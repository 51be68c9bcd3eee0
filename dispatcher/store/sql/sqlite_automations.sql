-- Named queries of the SQLite store for automation runs.

-- name: insert_run
INSERT INTO automation_runs (
    rule, source_id, result, due_at, state, engagement_id, detail, created_at, contact, sender
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (rule, source_id, result) DO NOTHING;

-- name: runs_by_key
SELECT * FROM automation_runs WHERE rule = ? AND source_id = ? AND result = ?;

-- name: due_runs
SELECT * FROM automation_runs WHERE state = 'due' AND due_at <= ? ORDER BY due_at LIMIT ?;

-- name: finish_run
UPDATE automation_runs SET state = ?, engagement_id = ?, detail = ?
WHERE rule = ? AND source_id = ? AND result = ?;

-- name: list_runs
SELECT * FROM automation_runs ORDER BY created_at DESC LIMIT ?;

-- name: insert_rule
INSERT INTO automation_rules (name, rule, created_at) VALUES (?, ?, ?);

-- name: delete_rule
DELETE FROM automation_rules WHERE name = ?;

-- name: list_rules
SELECT name, rule FROM automation_rules ORDER BY created_at, name;
