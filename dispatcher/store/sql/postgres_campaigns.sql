-- Named queries of the PostgreSQL store for campaigns and their contacts.

-- name: insert_campaign
INSERT INTO campaigns (
    id, name, channel, template, senders, send_window, outside_window, validity_us,
    start_at, state, source, reject_file, accepted, rejected, duplicates, suppressed,
    created_at, updated_at, segments, projected_finish, voice_message, subject, html,
    track_opens, track_clicks
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
          $19, $20, $21, $22, $23, $24, $25);

-- name: update_campaign
UPDATE campaigns SET
    state = $1, reject_file = $2, accepted = $3, rejected = $4, duplicates = $5,
    suppressed = $6, start_at = $7, updated_at = $8, segments = $9, projected_finish = $10
WHERE id = $11;

-- name: get_campaign
SELECT * FROM campaigns WHERE id = $1;

-- name: list_campaigns
SELECT * FROM campaigns ORDER BY created_at DESC, id DESC LIMIT $1;

-- Contacts' changes, one array per column: one statement for the whole batch.
-- name: set_contacts
UPDATE campaign_contacts AS c
SET state = n.state, attempt = n.attempt, message_id = n.message_id, sender = n.sender
FROM unnest($1::TEXT[], $2::INTEGER[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::INTEGER[])
    AS n (state, attempt, message_id, sender, campaign_id, line)
WHERE c.campaign_id = n.campaign_id AND c.line = n.line;

-- name: next_contacts
SELECT * FROM campaign_contacts
WHERE campaign_id = $1 AND sender = $2 AND state = 'pending' AND tz = ANY($3::TEXT[])
ORDER BY line LIMIT $4;

-- name: contacts_at
SELECT * FROM campaign_contacts WHERE campaign_id = $1 AND line = ANY($2::INTEGER[])
ORDER BY line;

-- name: contacts_in
SELECT * FROM campaign_contacts WHERE campaign_id = $1 AND state = ANY($2::TEXT[])
  AND line > $3
ORDER BY line LIMIT $4;

-- name: contact_zones
SELECT DISTINCT tz FROM campaign_contacts WHERE campaign_id = $1 AND state = 'pending';

-- name: contact_counts
SELECT state, COUNT(*) FROM campaign_contacts WHERE campaign_id = $1 GROUP BY state;

-- name: update_campaign_from
-- update_campaign, only while the campaign is still in the state the writer saw: a
-- worker that had not seen another's pause (or end) writes nothing over it.
UPDATE campaigns SET
    state = $1, reject_file = $2, accepted = $3, rejected = $4, duplicates = $5,
    suppressed = $6, start_at = $7, updated_at = $8, segments = $9, projected_finish = $10
WHERE id = $11 AND state = $12;

-- name: import_lock
-- Held by the worker importing a campaign's contacts, on a session of its own: the
-- two-key advisory locks of class 19, keyed by the campaign's id.
SELECT pg_advisory_lock(19, hashtext($1));

-- name: import_unlock
SELECT pg_advisory_unlock(19, hashtext($1));

-- name: import_alive
SELECT EXISTS (
    SELECT 1 FROM pg_locks AS l
    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 19
      AND l.objid = hashtext($1)::oid AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
);
