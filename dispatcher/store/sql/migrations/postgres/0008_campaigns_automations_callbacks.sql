-- Campaigns and their contacts, automation runs and rules, status callbacks, and the
-- commit order of the event histories the automations and callbacks follow, as in
-- SQLite (migrations 0005, 0007, 0008, 0009, 0011, 0012, 0019 and 0020 there), with an
-- email campaign's subject and HTML part.
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    channel TEXT NOT NULL,              -- text, voice or email
    template TEXT NOT NULL,             -- a text's template, a call script's name, an email's text
    senders JSONB NOT NULL,             -- the pool: sending numbers or From addresses
    send_window TEXT NOT NULL,          -- HH:MM-HH:MM in the contact's local time
    outside_window TEXT NOT NULL,       -- hold or expire
    validity_us BIGINT NOT NULL,
    start_at TIMESTAMPTZ,
    state TEXT NOT NULL,                -- running, paused, canceled, finished
    source TEXT,                        -- the contacts file it was imported from
    reject_file TEXT,
    accepted INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    suppressed INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    segments BIGINT NOT NULL DEFAULT 0,
    projected_finish TIMESTAMPTZ,
    voice_message TEXT,                 -- what its voice links play
    subject TEXT,                       -- an email campaign's subject
    html TEXT                           -- and its HTML part
);
CREATE INDEX campaigns_created ON campaigns (created_at);

CREATE TABLE campaign_contacts (
    campaign_id TEXT NOT NULL,
    line INTEGER NOT NULL,              -- the contact's line in the contacts file
    phone TEXT NOT NULL,                -- E.164, or an email campaign's address
    sender TEXT NOT NULL,               -- sticky: the pool number it is sent from
    tz TEXT NOT NULL,                   -- its time zone(s), "|"-separated
    fields JSONB NOT NULL,              -- the template's fields
    state TEXT NOT NULL,                -- pending, queued, sent, held, canceled, expired
    attempt INTEGER NOT NULL DEFAULT 0, -- a new attempt only after the last never left
    message_id TEXT,                    -- the text (call, email) of the current attempt
    PRIMARY KEY (campaign_id, line),
    UNIQUE (campaign_id, phone)
);
CREATE INDEX campaign_contacts_next ON campaign_contacts (campaign_id, sender, state, line);
CREATE INDEX campaign_contacts_state ON campaign_contacts (campaign_id, state, line);
CREATE INDEX campaign_contacts_message ON campaign_contacts (message_id)
    WHERE message_id IS NOT NULL;

CREATE TABLE automation_runs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,  -- insertion order (SQLite's rowid)
    rule TEXT NOT NULL,                 -- the automation's name
    source_id TEXT NOT NULL,            -- the text, call or email whose result triggered it
    result TEXT NOT NULL,               -- e.g. text.delivered, call.prompt
    due_at TIMESTAMPTZ NOT NULL,
    state TEXT NOT NULL,                -- due, done, failed
    engagement_id TEXT,                 -- the text, call or email it made
    detail TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    contact TEXT NOT NULL DEFAULT '',   -- who its engagement goes to
    sender TEXT NOT NULL DEFAULT '',    -- and from which number
    PRIMARY KEY (rule, source_id, result)  -- once per result
);
CREATE INDEX automation_runs_due ON automation_runs (due_at, seq) WHERE state = 'due';
CREATE INDEX automation_runs_created ON automation_runs (created_at, seq);

-- Automation rules added through the API (the file's rules are read at start).
CREATE TABLE automation_rules (
    name TEXT PRIMARY KEY,
    rule TEXT NOT NULL,                 -- the rule as JSON, exactly as it was given
    created_at TIMESTAMPTZ NOT NULL
);

-- The commit order of the histories. An identity value is taken when a row is written,
-- not when its transaction commits: a reader may see event 8 committed while event 7
-- is still in flight, and a cursor moved to 8 would skip 7 for good. Each event also
-- keeps the id of the transaction that wrote it (tx); every transaction older than a
-- snapshot's xmin has ended, so the events with tx below it are final and no later
-- commit lands among them. The automations and callbacks read the histories in (tx, id)
-- order and only up to that point (dispatcher/store/postgres/history.py).
ALTER TABLE events ADD COLUMN tx BIGINT NOT NULL
    DEFAULT (pg_current_xact_id()::TEXT::BIGINT);
CREATE INDEX events_commit_order ON events (tx, id);
ALTER TABLE call_events ADD COLUMN tx BIGINT NOT NULL
    DEFAULT (pg_current_xact_id()::TEXT::BIGINT);
CREATE INDEX call_events_commit_order ON call_events (tx, id);
ALTER TABLE email_events ADD COLUMN tx BIGINT NOT NULL
    DEFAULT (pg_current_xact_id()::TEXT::BIGINT);
CREATE INDEX email_events_commit_order ON email_events (tx, id);

-- How far the automations have matched the histories: a place in each (tx and id, as
-- one number: history.py), written with the runs those events made. One row while
-- rules exist; none while there are no rules (nothing is followed).
CREATE TABLE automation_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    text_event NUMERIC NOT NULL,
    call_event NUMERIC NOT NULL,
    email_event NUMERIC NOT NULL
);

-- Status callbacks: where each text's, call's or email's status changes go, the outbox
-- of their deliveries (each with its attempts) and how far the histories are followed.
CREATE TABLE callback_subscriptions (
    channel TEXT NOT NULL,              -- text, voice or email
    source_id TEXT NOT NULL,            -- the text's, call's or email's id
    url TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    last_event NUMERIC NOT NULL,        -- the last event of its history in the outbox
    last_seq INTEGER NOT NULL,          -- and its sequence number
    PRIMARY KEY (channel, source_id)
);

CREATE TABLE callback_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel TEXT NOT NULL,
    source_id TEXT NOT NULL,
    seq INTEGER NOT NULL,               -- 1, 2, ... per item: the order of its statuses
    event NUMERIC NOT NULL,             -- the event of its channel's history
    url TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    error_code TEXT,
    at TIMESTAMPTZ NOT NULL,            -- when the status changed
    created_at TIMESTAMPTZ NOT NULL,
    state TEXT NOT NULL,                -- pending, delivered, given up
    next_at TIMESTAMPTZ NOT NULL,       -- when a pending one is due
    attempts JSONB NOT NULL,            -- [[at in microseconds, HTTP status or null, error or null]]
    UNIQUE (channel, source_id, seq)
);
-- The pending deliveries: each item's first is its head (the others wait behind it),
-- and the heads go earliest due first.
CREATE INDEX callback_outbox_pending ON callback_outbox (channel, source_id, seq)
    WHERE state = 'pending';
CREATE INDEX callback_outbox_due ON callback_outbox (next_at, id) WHERE state = 'pending';

-- How far the histories have been put in the outbox: one row once followed.
CREATE TABLE callback_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    text_event NUMERIC NOT NULL,
    call_event NUMERIC NOT NULL,
    email_event NUMERIC NOT NULL
);
