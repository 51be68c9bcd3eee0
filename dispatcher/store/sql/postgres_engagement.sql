-- Voice links, their plays and the engagement metrics: named queries of the PostgreSQL
-- store (dispatcher/store/postgres/engagement.py; dispatcher/core/metrics.py counts the
-- rows). Every engagement query takes the time range [$1, $2) and the filters $3
-- campaign, $4 sender and [$5, $6) the triggers of one automation (NULL: any), compared
-- byte by byte (COLLATE "C", as the trigger indexes are) whatever the database's locale.

-- name: add_voice_link
INSERT INTO voice_links (token, message_id, campaign_id, message, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (token) DO NOTHING;

-- name: voice_link
SELECT message_id, message FROM voice_links WHERE token = $1;

-- name: record_play
INSERT INTO link_plays (token, at) VALUES ($1, $2);

-- name: engagement_texts
-- The applied, counted events of texts; "taken" marks a text's first event among
-- those that say the carrier took it (it is Sent there: a receipt can beat the
-- acknowledgement). Reads events_metrics (the WHERE repeats its condition).
SELECT e.message_id, e.at, e.status, e.reason, m.campaign_id, m.sender, m."trigger",
    e.status IN ('Sent', 'Delivered', 'Undelivered', 'Unreachable', 'Completed')
    AND NOT EXISTS (
        SELECT 1 FROM events AS p
        WHERE p.message_id = e.message_id AND p.id < e.id AND p.applied
        AND p.status IN ('Sent', 'Delivered', 'Undelivered', 'Unreachable', 'Completed')
    ) AS taken
FROM events AS e JOIN messages AS m ON m.id = e.message_id
WHERE e.applied
    AND e.status IN ('Sent', 'Delivered', 'Undelivered', 'Unreachable', 'Failed', 'Completed')
    AND e.at >= $1 AND e.at < $2
    AND ($3::text IS NULL OR m.campaign_id = $3) AND ($4::text IS NULL OR m.sender = $4)
    AND ($5::text IS NULL
         OR (m."trigger" COLLATE "C" >= $5 AND m."trigger" COLLATE "C" < $6::text));

-- name: engagement_calls
-- Every result of a call, and its applied, counted statuses.
SELECT e.call_id, e.at, e.status, e.result, e.applied, e.reason,
    c.campaign_id, c.sender, c."trigger"
FROM call_events AS e JOIN calls AS c ON c.id = e.call_id
WHERE e.at >= $1 AND e.at < $2
    AND (e.result IS NOT NULL OR (e.applied AND e.status IN (
        'Queued', 'Ringing', 'Answered', 'No answer', 'Hangup', 'Busy', 'Failed', 'Canceled',
        'Completed'
    )))
    AND ($3::text IS NULL OR c.campaign_id = $3) AND ($4::text IS NULL OR c.sender = $4)
    AND ($5::text IS NULL
         OR (c."trigger" COLLATE "C" >= $5 AND c."trigger" COLLATE "C" < $6::text));

-- name: engagement_plays
-- Plays of voice links, for the text carrying the link (the link's campaign first).
SELECT v.message_id, p.at, COALESCE(v.campaign_id, m.campaign_id) AS campaign_id,
    m.sender, m."trigger"
FROM link_plays AS p
JOIN voice_links AS v ON v.token = p.token
LEFT JOIN messages AS m ON m.id = v.message_id
WHERE p.at >= $1 AND p.at < $2
    AND ($3::text IS NULL OR COALESCE(v.campaign_id, m.campaign_id) = $3)
    AND ($4::text IS NULL OR m.sender = $4)
    AND ($5::text IS NULL
         OR (m."trigger" COLLATE "C" >= $5 AND m."trigger" COLLATE "C" < $6::text));

-- name: engagement_emails
-- Every result of an email, and its applied, counted statuses; "taken" marks an
-- email's first applied event among those that say the relay took it (Sent there).
SELECT e.email_id, e.at, e.status, e.result, e.applied, e.reason,
    m.campaign_id, m.sender, m."trigger",
    e.applied AND e.status IN ('Sent', 'Delivered', 'Bounced')
    AND NOT EXISTS (
        SELECT 1 FROM email_events AS p
        WHERE p.email_id = e.email_id AND p.id < e.id AND p.applied
        AND p.status IN ('Sent', 'Delivered', 'Bounced')
    ) AS taken
FROM email_events AS e JOIN emails AS m ON m.id = e.email_id
WHERE e.at >= $1 AND e.at < $2
    AND (e.result IS NOT NULL OR (e.applied AND e.status IN ('Sent', 'Delivered', 'Bounced')))
    AND ($3::text IS NULL OR m.campaign_id = $3) AND ($4::text IS NULL OR m.sender = $4)
    AND ($5::text IS NULL
         OR (m."trigger" COLLATE "C" >= $5 AND m."trigger" COLLATE "C" < $6::text));

-- name: engagement_email_plays
-- Plays of voice links an email carries (the link's campaign first).
SELECT v.message_id, p.at, COALESCE(v.campaign_id, m.campaign_id) AS campaign_id,
    m.sender, m."trigger"
FROM link_plays AS p
JOIN voice_links AS v ON v.token = p.token
JOIN emails AS m ON m.id = v.message_id
WHERE p.at >= $1 AND p.at < $2
    AND ($3::text IS NULL OR COALESCE(v.campaign_id, m.campaign_id) = $3)
    AND ($4::text IS NULL OR m.sender = $4)
    AND ($5::text IS NULL
         OR (m."trigger" COLLATE "C" >= $5 AND m."trigger" COLLATE "C" < $6::text));

-- name: engagement_made
-- Texts, calls and emails automations made (trigger automation:<rule>:<source id>, in
-- the range [$3, $4)), accepted in [$1, $2). Their sources are read next.
SELECT 'text' AS channel, id, accepted_at, "trigger" FROM messages
WHERE "trigger" COLLATE "C" >= $3 AND "trigger" COLLATE "C" < $4
    AND accepted_at >= $1 AND accepted_at < $2
UNION ALL
SELECT 'voice', id, accepted_at, "trigger" FROM calls
WHERE "trigger" COLLATE "C" >= $3 AND "trigger" COLLATE "C" < $4
    AND accepted_at >= $1 AND accepted_at < $2
UNION ALL
SELECT 'email', id, accepted_at, "trigger" FROM emails
WHERE "trigger" COLLATE "C" >= $3 AND "trigger" COLLATE "C" < $4
    AND accepted_at >= $1 AND accepted_at < $2;

-- name: engagement_sources
-- The texts, calls and emails of a list of ids: what an Activity is attributed to, and
-- the channel it counts under (the table holding the source).
SELECT 'text' AS channel, id, sender, campaign_id FROM messages WHERE id = ANY($1::text[])
UNION ALL
SELECT 'voice', id, sender, campaign_id FROM calls WHERE id = ANY($1::text[])
UNION ALL
SELECT 'email', id, sender, campaign_id FROM emails WHERE id = ANY($1::text[]);
