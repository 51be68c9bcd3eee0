-- Campaigns, their contacts, automation runs and voice links; what a text or call
-- belongs to (a campaign) and what triggered it (an automation, a call's step).
ALTER TABLE messages ADD COLUMN campaign_id TEXT;
ALTER TABLE messages ADD COLUMN "trigger" TEXT;
ALTER TABLE calls ADD COLUMN campaign_id TEXT;
CREATE INDEX messages_campaign ON messages (campaign_id, seq) WHERE campaign_id IS NOT NULL;
CREATE INDEX calls_campaign ON calls (campaign_id, seq) WHERE campaign_id IS NOT NULL;

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    channel TEXT NOT NULL,              -- text or voice
    template TEXT NOT NULL,             -- a text's template, or a call script's name
    senders TEXT NOT NULL,              -- JSON list of sending numbers (the pool)
    send_window TEXT NOT NULL,          -- HH:MM-HH:MM in the contact's local time
    outside_window TEXT NOT NULL,       -- hold or expire
    validity_us INTEGER NOT NULL,
    start_at INTEGER,                   -- times: microseconds since 1970-01-01 UTC
    state TEXT NOT NULL,                -- running, paused, canceled, finished
    source TEXT,                        -- the contacts file it was imported from
    reject_file TEXT,
    accepted INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    suppressed INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE campaign_contacts (
    campaign_id TEXT NOT NULL,
    line INTEGER NOT NULL,              -- the contact's line in the contacts file
    phone TEXT NOT NULL,                -- E.164
    sender TEXT NOT NULL,               -- sticky: the pool number it is sent from
    tz TEXT NOT NULL,                   -- its time zone(s), "|"-separated
    fields TEXT NOT NULL,               -- JSON object of the template's fields
    state TEXT NOT NULL,                -- pending, queued, sent, held, canceled, expired
    attempt INTEGER NOT NULL DEFAULT 0, -- a new attempt only after the last never left
    message_id TEXT,                    -- the text (or call) of the current attempt
    PRIMARY KEY (campaign_id, line),
    UNIQUE (campaign_id, phone)
);
CREATE INDEX campaign_contacts_next ON campaign_contacts (campaign_id, sender, state, line);
CREATE INDEX campaign_contacts_message ON campaign_contacts (message_id)
    WHERE message_id IS NOT NULL;

CREATE TABLE automation_runs (
    rule TEXT NOT NULL,                 -- the automation's name
    source_id TEXT NOT NULL,            -- the text or call whose result triggered it
    result TEXT NOT NULL,               -- e.g. text.delivered, call.prompt
    due_at INTEGER NOT NULL,
    state TEXT NOT NULL,                -- due, done, failed
    engagement_id TEXT,                 -- the text or call it made
    detail TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (rule, source_id, result)  -- once per result
);
CREATE INDEX automation_runs_due ON automation_runs (state, due_at);

CREATE TABLE voice_links (
    token TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,           -- the text that carries the link
    campaign_id TEXT,
    message TEXT NOT NULL,              -- what it plays: text to say or an audio URL
    created_at INTEGER NOT NULL
);

CREATE TABLE link_plays (
    id INTEGER PRIMARY KEY,
    token TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX link_plays_token ON link_plays (token, id);
