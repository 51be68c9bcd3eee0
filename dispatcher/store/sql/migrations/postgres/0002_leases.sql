-- Workers and the leases on pacing keys (docs/scale-out.md).
CREATE TABLE workers (
    id TEXT PRIMARY KEY,                -- unique per process start
    address TEXT,                       -- where its HTTP app answers, if it has one
    started_at TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL   -- the database's clock
);

-- One row per pacing key (a sending number; later a voice account or an email relay).
-- owner and epoch say who may send from it: epoch grows at every acquisition, and a
-- send starts, and is recorded, only under the epoch it was started with (fencing).
CREATE TABLE pacing_keys (
    key TEXT PRIMARY KEY,
    owner TEXT,                         -- a worker's id; NULL when free
    epoch BIGINT NOT NULL DEFAULT 0,
    lease_expires_at TIMESTAMPTZ,       -- the database's clock only
    next_slot_at TIMESTAMPTZ,           -- no send starts before it, whoever owns the key
    paused BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX pacing_keys_owner ON pacing_keys (owner) WHERE owner IS NOT NULL;

-- The start of a send, in one round trip: under the key's row lock, check owner, epoch
-- and the lease left; refuse before next_slot_at; move the message from Queued to
-- Sending with its attempt and epoch, append its event, book the key's next slot.
-- outcome: started, not_owner (another owner or epoch), lease_short, too_early,
-- busy (a send of the key is in flight or unknown), not_queued.
CREATE FUNCTION dispatcher_start_send(
    p_owner TEXT, p_key TEXT, p_epoch BIGINT, p_message TEXT, p_attempt TEXT,
    p_spacing INTERVAL, p_min_lease INTERVAL
) RETURNS TABLE (
    outcome TEXT, started_at TIMESTAMPTZ, next_slot_at TIMESTAMPTZ,
    lease_expires_at TIMESTAMPTZ
)
LANGUAGE plpgsql AS $$
DECLARE
    k pacing_keys%ROWTYPE;
    v_now TIMESTAMPTZ;
BEGIN
    SELECT * INTO k FROM pacing_keys AS p WHERE p.key = p_key FOR UPDATE;
    v_now := clock_timestamp();  -- read after the lock: a wait for it counts
    IF NOT FOUND OR k.owner IS DISTINCT FROM p_owner OR k.epoch <> p_epoch THEN
        RETURN QUERY SELECT 'not_owner'::TEXT, NULL::TIMESTAMPTZ, k.next_slot_at,
            k.lease_expires_at;
        RETURN;
    END IF;
    IF k.lease_expires_at IS NULL OR k.lease_expires_at - v_now < p_min_lease THEN
        RETURN QUERY SELECT 'lease_short'::TEXT, NULL::TIMESTAMPTZ, k.next_slot_at,
            k.lease_expires_at;
        RETURN;
    END IF;
    IF k.next_slot_at > v_now THEN
        RETURN QUERY SELECT 'too_early'::TEXT, NULL::TIMESTAMPTZ, k.next_slot_at,
            k.lease_expires_at;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM messages AS m WHERE m.sender = p_key AND m.status = 'Sending') THEN
        RETURN QUERY SELECT 'busy'::TEXT, NULL::TIMESTAMPTZ, k.next_slot_at,
            k.lease_expires_at;
        RETURN;
    END IF;
    UPDATE messages AS m SET status = 'Sending', attempt_id = p_attempt, epoch = p_epoch,
        send_started_at = v_now, updated_at = v_now
    WHERE m.id = p_message AND m.sender = p_key AND m.status = 'Queued';
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_queued'::TEXT, NULL::TIMESTAMPTZ, k.next_slot_at,
            k.lease_expires_at;
        RETURN;
    END IF;
    INSERT INTO events (message_id, at, status, source, applied)
    VALUES (p_message, v_now, 'Sending', 'scheduler', true);
    UPDATE pacing_keys AS p SET next_slot_at = v_now + p_spacing WHERE p.key = p_key;
    RETURN QUERY SELECT 'started'::TEXT, v_now, v_now + p_spacing, k.lease_expires_at;
END
$$;
