-- An email's own tracking switches, and an email campaign's for each of its emails:
-- 1 on, 0 off, NULL the [email] track_opens / track_clicks configuration's.
ALTER TABLE emails ADD COLUMN track_opens INTEGER;
ALTER TABLE emails ADD COLUMN track_clicks INTEGER;
ALTER TABLE campaigns ADD COLUMN track_opens INTEGER;
ALTER TABLE campaigns ADD COLUMN track_clicks INTEGER;
