-- Engagement metrics read the counted events, call events and voice-link plays by
-- time, and the texts and calls automations made by their trigger. The index of text
-- events holds only the applied ones the metrics count (one or two a text), so the
-- send path writes little more.
CREATE INDEX events_metrics ON events (at)
    WHERE applied = 1
    AND status IN ('Sent', 'Delivered', 'Undelivered', 'Unreachable', 'Failed', 'Completed');
CREATE INDEX call_events_at ON call_events (at);
CREATE INDEX link_plays_at ON link_plays (at);
CREATE INDEX messages_trigger ON messages ("trigger") WHERE "trigger" IS NOT NULL;
CREATE INDEX calls_trigger ON calls ("trigger") WHERE "trigger" IS NOT NULL;
