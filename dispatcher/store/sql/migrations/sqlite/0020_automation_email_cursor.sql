-- Automations follow the email history too: the last email event they handled. A
-- cursor already kept starts at the email history's tip, so rules match email results
-- from now on, not the emails sent before.
ALTER TABLE automation_cursor ADD COLUMN email_event INTEGER NOT NULL DEFAULT 0;  -- email_events.id
UPDATE automation_cursor SET email_event = (SELECT COALESCE(MAX(id), 0) FROM email_events);
