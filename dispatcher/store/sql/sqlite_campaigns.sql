-- Named queries of the SQLite store for campaigns and their contacts.

-- name: insert_campaign
INSERT INTO campaigns (
    id, name, channel, template, senders, send_window, outside_window, validity_us,
    start_at, state, source, reject_file, accepted, rejected, duplicates, suppressed,
    created_at, updated_at, segments, projected_finish, voice_message, subject, html,
    track_opens, track_clicks
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: update_campaign
UPDATE campaigns SET
    state = ?, reject_file = ?, accepted = ?, rejected = ?, duplicates = ?, suppressed = ?,
    start_at = ?, updated_at = ?, segments = ?, projected_finish = ?
WHERE id = ?;

-- name: get_campaign
SELECT * FROM campaigns WHERE id = ?;

-- name: list_campaigns
SELECT * FROM campaigns ORDER BY created_at DESC LIMIT ?;

-- name: insert_contact
INSERT INTO campaign_contacts (
    campaign_id, line, phone, sender, tz, fields, state, attempt, message_id
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: set_contact
UPDATE campaign_contacts SET state = ?, attempt = ?, message_id = ?, sender = ?
WHERE campaign_id = ? AND line = ?;

-- name: next_contacts
SELECT * FROM campaign_contacts
WHERE campaign_id = ? AND sender = ? AND state = 'pending'
  AND tz IN (SELECT value FROM json_each(?))
ORDER BY line LIMIT ?;

-- name: contacts_at
SELECT * FROM campaign_contacts
WHERE campaign_id = ? AND line IN (SELECT value FROM json_each(?))
ORDER BY line;

-- name: contacts_in
SELECT * FROM campaign_contacts
WHERE campaign_id = ? AND state IN (SELECT value FROM json_each(?)) AND line > ?
ORDER BY line LIMIT ?;

-- name: contact_zones
SELECT DISTINCT tz FROM campaign_contacts WHERE campaign_id = ? AND state = 'pending';

-- name: contact_counts
SELECT state, COUNT(*) FROM campaign_contacts WHERE campaign_id = ? GROUP BY state;

-- name: voice_link
SELECT message_id, message FROM voice_links WHERE token = ?;
