-- Email: the projections, their event histories and each relay's next slot.
CREATE TABLE emails (
    seq INTEGER PRIMARY KEY,            -- submission order: emails go oldest first
    id TEXT NOT NULL UNIQUE,
    relay TEXT NOT NULL,                -- the relay whose pace it goes at
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    text TEXT NOT NULL,
    html TEXT,
    lane INTEGER NOT NULL,              -- 0 automation, 1 bulk
    status TEXT NOT NULL,
    reason TEXT,
    provider_code TEXT,                 -- the relay's reply code
    provider_id TEXT,
    attempt_id TEXT,
    sent_at INTEGER,                    -- times: microseconds since 1970-01-01 UTC
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT,
    "trigger" TEXT,                     -- a keyword in SQL: always quoted
    campaign_id TEXT,
    accepted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX emails_status ON emails (status, seq);

CREATE TABLE email_events (
    id INTEGER PRIMARY KEY,
    email_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    status TEXT,                        -- a status, or NULL for a result only
    result TEXT,                        -- Open, Click, Unsubscribe, Complaint, or NULL
    reason TEXT,
    provider_code TEXT,
    source TEXT NOT NULL,
    applied INTEGER NOT NULL,
    detail TEXT
);
CREATE INDEX email_events_email ON email_events (email_id, id);

CREATE TABLE email_slots (
    relay TEXT PRIMARY KEY,
    next_slot_at INTEGER NOT NULL       -- survives restarts: a new run never sends early
);
