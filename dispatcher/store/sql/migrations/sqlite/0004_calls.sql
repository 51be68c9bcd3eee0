-- Voice calls: their projections, their event histories and each account's next slot.
CREATE TABLE calls (
    seq INTEGER PRIMARY KEY,            -- submission order: calls are placed oldest first
    id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,              -- the provider account whose calls per second pace it
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    script TEXT NOT NULL,               -- the validated script, as canonical JSON
    script_name TEXT,
    lane INTEGER NOT NULL,              -- 0 automation, 1 bulk
    status TEXT NOT NULL,
    reason TEXT,
    provider_code TEXT,
    provider_id TEXT,
    attempt_id TEXT,
    placed_at INTEGER,                  -- times: microseconds since 1970-01-01 UTC
    answered_by TEXT,
    script_done INTEGER NOT NULL,       -- 1 once the script ran to its end
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT,
    "trigger" TEXT,                     -- a keyword in SQL: always quoted
    accepted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX calls_status ON calls (status, seq);
CREATE INDEX calls_recipient ON calls (recipient, seq);
CREATE INDEX calls_provider ON calls (provider_id) WHERE provider_id IS NOT NULL;

CREATE TABLE call_events (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    status TEXT,                        -- a status report, or NULL for a result only
    result TEXT,                        -- a voice result (AMD, a script step), or NULL
    step INTEGER,                       -- the script step it concerns
    reason TEXT,
    provider_code TEXT,
    source TEXT NOT NULL,
    applied INTEGER NOT NULL,
    detail TEXT
);
CREATE INDEX call_events_call ON call_events (call_id, id);

CREATE TABLE call_slots (
    account TEXT PRIMARY KEY,
    next_slot_at INTEGER NOT NULL       -- survives restarts: a new run never calls early
);
