-- Automation rules added through the API (the file's rules are read at start).
CREATE TABLE automation_rules (
    name TEXT PRIMARY KEY,
    rule TEXT NOT NULL,                 -- the rule as JSON, as it was given
    created_at INTEGER NOT NULL
);
