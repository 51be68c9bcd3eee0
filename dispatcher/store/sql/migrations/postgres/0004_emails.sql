-- Email: the projections, their event histories and each relay's next slot (as the
-- SQLite schema: migrations 0014, 0017 and 0018 there).
CREATE TABLE emails (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- submission order: oldest first
    id TEXT NOT NULL UNIQUE,
    relay TEXT NOT NULL,                -- the relay whose pace it goes at
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    text TEXT NOT NULL,
    html TEXT,
    lane SMALLINT NOT NULL,             -- 0 automation, 1 bulk
    status TEXT NOT NULL,
    reason TEXT,
    provider_code TEXT,                 -- the relay's reply code
    provider_id TEXT,
    attempt_id TEXT,
    sent_at TIMESTAMPTZ,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT,
    "trigger" TEXT,                     -- a keyword in SQL: always quoted
    campaign_id TEXT,
    accepted_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX emails_status ON emails (status, seq);
-- An address's emails, newest first: its soft bounces in a row are counted from them.
CREATE INDEX emails_recipient ON emails (recipient, seq);
-- The engagement metrics read the emails automations made by their trigger.
CREATE INDEX emails_trigger ON emails ("trigger") WHERE "trigger" IS NOT NULL;

CREATE TABLE email_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email_id TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    status TEXT,                        -- a status, or NULL for a result only
    result TEXT,                        -- Open, Click, Unsubscribe, Complaint, or NULL
    reason TEXT,
    provider_code TEXT,
    source TEXT NOT NULL,
    applied BOOLEAN NOT NULL,
    detail TEXT
);
CREATE INDEX email_events_email ON email_events (email_id, id);
-- The engagement metrics read the email events by time.
CREATE INDEX email_events_at ON email_events (at);

CREATE TABLE email_slots (
    relay TEXT PRIMARY KEY,
    next_slot_at TIMESTAMPTZ NOT NULL   -- survives restarts: a new run never sends early
);
