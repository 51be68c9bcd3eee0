-- The durable queue, the event history, sending numbers and the Do Not Text list.
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY,            -- submission order: FIFO within a lane
    id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    body TEXT NOT NULL,
    segments INTEGER NOT NULL,
    lane INTEGER NOT NULL,              -- 0 automation, 1 bulk
    status TEXT NOT NULL,
    accepted INTEGER NOT NULL,          -- 1 when it entered the queue (same-second rule)
    reason TEXT,
    provider_code TEXT,
    provider_id TEXT,
    attempt_id TEXT,
    duplicate_of TEXT,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT,
    accepted_at INTEGER NOT NULL,       -- times: microseconds since 1970-01-01 UTC
    expires_at INTEGER NOT NULL,
    send_started_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX messages_queue ON messages (sender, lane, seq) WHERE status = 'Queued';
CREATE INDEX messages_expiry ON messages (expires_at) WHERE status = 'Queued';
CREATE INDEX messages_recipient ON messages (recipient, seq);
CREATE INDEX messages_status ON messages (status, seq);
CREATE INDEX messages_provider ON messages (provider_id) WHERE provider_id IS NOT NULL;

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    provider_code TEXT,
    source TEXT NOT NULL,
    applied INTEGER NOT NULL,
    detail TEXT
);
CREATE INDEX events_message ON events (message_id, id);

CREATE TABLE senders (
    number TEXT PRIMARY KEY,
    next_slot_at INTEGER,               -- survives restarts: a new run never sends early
    paused INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE do_not_text (
    number TEXT PRIMARY KEY,
    added_at INTEGER NOT NULL,
    added_by TEXT NOT NULL,
    reason TEXT
);
