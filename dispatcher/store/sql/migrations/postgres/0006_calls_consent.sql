-- Voice calls (their projections, event histories and each account's next slot) and
-- the consent ledger with its Do Not Text view, as in SQLite (migrations 0004, 0005,
-- 0006, 0010 and 0016 there).
CREATE TABLE calls (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- submission order: oldest first
    id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,              -- the provider account whose calls per second pace it
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    script TEXT NOT NULL,               -- the validated script, as canonical JSON (kept as is)
    script_name TEXT,
    lane SMALLINT NOT NULL,             -- 0 automation, 1 bulk
    status TEXT NOT NULL,
    reason TEXT,
    provider_code TEXT,
    provider_id TEXT,
    attempt_id TEXT,
    placed_at TIMESTAMPTZ,
    answered_by TEXT,
    script_done BOOLEAN NOT NULL,       -- once the script ran to its end
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT,
    "trigger" TEXT,                     -- a keyword in SQL: always quoted
    accepted_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    campaign_id TEXT,
    expires_at TIMESTAMPTZ              -- a call not placed by then is not placed
);
CREATE INDEX calls_status ON calls (status, seq);
CREATE INDEX calls_recipient ON calls (recipient, seq);
CREATE INDEX calls_provider ON calls (provider_id) WHERE provider_id IS NOT NULL;
CREATE INDEX calls_campaign ON calls (campaign_id, seq) WHERE campaign_id IS NOT NULL;
CREATE INDEX calls_trigger ON calls ("trigger") WHERE "trigger" IS NOT NULL;

CREATE TABLE call_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    status TEXT,                        -- a status report, or NULL for a result only
    result TEXT,                        -- a voice result (AMD, a script step), or NULL
    step INTEGER,                       -- the script step it concerns
    reason TEXT,
    provider_code TEXT,
    source TEXT NOT NULL,
    applied BOOLEAN NOT NULL,
    detail TEXT
);
CREATE INDEX call_events_call ON call_events (call_id, id);
CREATE INDEX call_events_at ON call_events (at);

CREATE TABLE call_slots (
    account TEXT PRIMARY KEY,
    next_slot_at TIMESTAMPTZ NOT NULL   -- survives restarts: a new run never calls early
);

-- The consent ledger: every opt-out and opt-in of every channel (text, voice, email),
-- appended and never changed; the current state is derived from it in recorded order
-- (dispatcher/core/consent.py).
CREATE TABLE consent (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- recorded order
    id TEXT NOT NULL UNIQUE,
    contact TEXT NOT NULL,              -- an E.164 number or a lower-case email address
    channel TEXT NOT NULL,              -- text, voice, email
    action TEXT NOT NULL,               -- opt_out, opt_in
    scope TEXT NOT NULL,                -- all, sender, campaign
    scope_value TEXT NOT NULL,          -- the sender or campaign; '' for all
    source TEXT NOT NULL,               -- stop_reply, carrier, hard_bounce, operator, ...
    who TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    reason TEXT
);
CREATE INDEX consent_contact ON consent (contact, seq);
-- The entries the Do Not Text view reads: text, for every sender.
CREATE INDEX consent_text_all ON consent (contact, seq)
    WHERE channel = 'text' AND scope = 'all';

-- The Do Not Text view: for each number, the earliest text opt-out for every sender
-- that no later text opt-in for every sender took back.
CREATE VIEW do_not_text AS
SELECT DISTINCT ON (o.contact)
       o.contact AS number, o.seq, o.at AS added_at, o.who AS added_by, o.reason
FROM consent AS o
WHERE o.channel = 'text' AND o.scope = 'all' AND o.action = 'opt_out'
  AND NOT EXISTS (
      SELECT 1 FROM consent AS i
      WHERE i.contact = o.contact AND i.channel = 'text' AND i.scope = 'all'
        AND i.action = 'opt_in' AND i.seq > o.seq
  )
ORDER BY o.contact, o.seq;
