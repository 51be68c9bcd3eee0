-- Status callbacks: where each text's, call's or email's status changes go, the outbox
-- of their deliveries (each with its attempts) and how far the histories are followed.
CREATE TABLE callback_subscriptions (
    channel TEXT NOT NULL,              -- text, voice or email
    source_id TEXT NOT NULL,            -- the text's, call's or email's id
    url TEXT NOT NULL,
    created_at INTEGER NOT NULL,        -- microseconds since 1970-01-01 UTC
    last_event INTEGER NOT NULL,        -- the last event of its history in the outbox
    last_seq INTEGER NOT NULL,          -- and its sequence number
    PRIMARY KEY (channel, source_id)
) WITHOUT ROWID;

CREATE TABLE callback_outbox (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    source_id TEXT NOT NULL,
    seq INTEGER NOT NULL,               -- 1, 2, ... per item: the order of its statuses
    event INTEGER NOT NULL,             -- the event of its channel's history
    url TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    error_code TEXT,
    at INTEGER NOT NULL,                -- when the status changed
    created_at INTEGER NOT NULL,
    state TEXT NOT NULL,                -- pending, delivered, given up
    next_at INTEGER NOT NULL,           -- when a pending one is due
    attempts TEXT NOT NULL,             -- JSON: [[at, HTTP status or null, error or null]]
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
    text_event INTEGER NOT NULL,
    call_event INTEGER NOT NULL,
    email_event INTEGER NOT NULL
);
