-- The durable queue of texts and their event history.
CREATE TABLE messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- submission order: FIFO in a lane
    id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,               -- the pacing key of a text
    recipient TEXT NOT NULL,
    body TEXT NOT NULL,
    segments INTEGER NOT NULL,
    lane SMALLINT NOT NULL,             -- 0 automation, 1 bulk
    status TEXT NOT NULL,
    accepted BOOLEAN NOT NULL,          -- it entered the queue (same-second rule)
    reason TEXT,
    provider_code TEXT,
    provider_id TEXT,
    attempt_id TEXT,
    duplicate_of TEXT,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT,
    accepted_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    send_started_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL,
    campaign_id TEXT,
    "trigger" TEXT,
    epoch BIGINT                        -- its pacing key's epoch when its send started
);
CREATE INDEX messages_queue ON messages (sender, lane, seq) WHERE status = 'Queued';
CREATE INDEX messages_expiry ON messages (expires_at) WHERE status = 'Queued';
CREATE INDEX messages_recipient ON messages (recipient, seq);
CREATE INDEX messages_status ON messages (status, seq);
CREATE INDEX messages_provider ON messages (provider_id) WHERE provider_id IS NOT NULL;
-- At most one send in flight per pacing key, whoever started it: a send whose outcome
-- is unknown holds its key until it is reconciled.
CREATE UNIQUE INDEX messages_one_sending ON messages (sender) WHERE status = 'Sending';

CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    provider_code TEXT,
    source TEXT NOT NULL,
    applied BOOLEAN NOT NULL,
    detail TEXT
);
CREATE INDEX events_message ON events (message_id, id);
