-- Who an automation's engagement goes to, and from which number.
ALTER TABLE automation_runs ADD COLUMN contact TEXT NOT NULL DEFAULT '';
ALTER TABLE automation_runs ADD COLUMN sender TEXT NOT NULL DEFAULT '';
