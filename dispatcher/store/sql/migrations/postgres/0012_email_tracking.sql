-- An email's own tracking switches, and an email campaign's for each of its emails:
-- NULL the [email] track_opens / track_clicks configuration's.
ALTER TABLE emails ADD COLUMN track_opens BOOLEAN;
ALTER TABLE emails ADD COLUMN track_clicks BOOLEAN;
ALTER TABLE campaigns ADD COLUMN track_opens BOOLEAN;
ALTER TABLE campaigns ADD COLUMN track_clicks BOOLEAN;
