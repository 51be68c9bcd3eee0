-- The operator's recent errors are read from the store (they survive a restart): the
-- applied error events of texts, newest first, from an index that holds only them (the
-- send path writes to it only for a text that ends in error). The email engagement
-- metrics read the email events by time and the emails automations made by trigger.
CREATE INDEX events_errors ON events (id)
    WHERE applied = 1 AND status IN ('Failed', 'Undelivered', 'Unreachable');
CREATE INDEX email_events_at ON email_events (at);
CREATE INDEX emails_trigger ON emails ("trigger") WHERE "trigger" IS NOT NULL;
