-- Email in the engagement metrics: the rows of email events, plays of voice links an
-- email carries, and what automations made from an email or as an email. Parameters
-- as the texts' engagement queries: [?1, ?2) the time range, ?3 a campaign, ?4 a
-- sender, [?5, ?6) the triggers of an automation.

-- name: engagement_emails
-- Every result of an email, and its applied, counted statuses; "taken" marks an
-- email's first applied event among those that say the relay took it (Sent there).
-- Reads email_events by time (migration 0017).
SELECT e.email_id, e.at, e.status, e.result, e.applied, e.reason,
    m.campaign_id, m.sender, m."trigger",
    e.applied = 1 AND e.status IN ('Sent', 'Delivered', 'Bounced')
    AND NOT EXISTS (
        SELECT 1 FROM email_events AS p
        WHERE p.email_id = e.email_id AND p.id < e.id AND p.applied = 1
        AND p.status IN ('Sent', 'Delivered', 'Bounced')
    ) AS taken
FROM email_events AS e JOIN emails AS m ON m.id = e.email_id
WHERE e.at >= ?1 AND e.at < ?2
    AND (e.result IS NOT NULL
         OR (e.applied = 1 AND e.status IN ('Sent', 'Delivered', 'Bounced')))
    AND (?3 IS NULL OR m.campaign_id = ?3) AND (?4 IS NULL OR m.sender = ?4)
    AND (?5 IS NULL OR (m."trigger" >= ?5 AND m."trigger" < ?6));

-- name: engagement_email_plays
-- Plays of voice links an email carries (the link's campaign first).
SELECT v.message_id, p.at, COALESCE(v.campaign_id, m.campaign_id) AS campaign_id,
    m.sender, m."trigger"
FROM link_plays AS p
JOIN voice_links AS v ON v.token = p.token
JOIN emails AS m ON m.id = v.message_id
WHERE p.at >= ?1 AND p.at < ?2
    AND (?3 IS NULL OR COALESCE(v.campaign_id, m.campaign_id) = ?3)
    AND (?4 IS NULL OR m.sender = ?4)
    AND (?5 IS NULL OR (m."trigger" >= ?5 AND m."trigger" < ?6));

-- name: engagement_email_made
-- Emails automations made (trigger in [?3, ?4)), accepted in [?1, ?2).
SELECT 'email' AS channel, id, accepted_at, "trigger" FROM emails
WHERE "trigger" >= ?3 AND "trigger" < ?4 AND accepted_at >= ?1 AND accepted_at < ?2;

-- name: engagement_email_sources
-- The emails of a JSON list of ids: sources of Activity, counted as email.
SELECT 'email' AS channel, id, sender, campaign_id FROM emails
WHERE id IN (SELECT value FROM json_each(?1));
