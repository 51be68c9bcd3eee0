-- A send starts at the slot its worker intends, not at the moment of the claim: the
-- engine claims a text a little ahead of its slot (the claim lead), so the start names
-- the slot. Refused when the slot falls before the key's next_slot_at (a previous
-- owner's, maybe); the next slot is booked from the intended slot. A NULL slot is the
-- database's clock at the start (a caller with no slot of its own).
-- outcome: started, not_owner (another owner or epoch), lease_short (less than
-- p_min_lease left after the slot), too_early, busy, not_queued.
DROP FUNCTION dispatcher_start_send(TEXT, TEXT, BIGINT, TEXT, TEXT, INTERVAL, INTERVAL);

CREATE FUNCTION dispatcher_start_send(
    p_owner TEXT,
    p_key TEXT,
    p_epoch BIGINT,
    p_message TEXT,
    p_attempt TEXT,
    p_spacing INTERVAL,
    p_min_lease INTERVAL,
    p_slot TIMESTAMPTZ
) RETURNS TABLE (
    outcome TEXT, started_at TIMESTAMPTZ, next_slot_at TIMESTAMPTZ, lease_expires_at TIMESTAMPTZ
)
LANGUAGE plpgsql AS $$
DECLARE
    k pacing_keys%ROWTYPE;
    v_slot TIMESTAMPTZ;
    v_now TIMESTAMPTZ;
    v_outcome TEXT;
BEGIN
    SELECT * INTO k FROM pacing_keys AS p WHERE p.key = p_key FOR UPDATE;
    v_now := clock_timestamp();  -- read after the lock: a wait for it counts
    v_slot := COALESCE(p_slot, v_now);
    v_outcome := CASE
        WHEN k.key IS NULL OR k.owner IS DISTINCT FROM p_owner OR k.epoch <> p_epoch
            THEN 'not_owner'
        -- the lease must outlast the send's slot, not only its claim
        WHEN k.lease_expires_at IS NULL
             OR k.lease_expires_at - GREATEST(v_now, v_slot) < p_min_lease THEN 'lease_short'
        WHEN k.next_slot_at > v_slot THEN 'too_early'
        WHEN EXISTS (SELECT 1 FROM messages AS m
                     WHERE m.sender = p_key AND m.status = 'Sending') THEN 'busy'
    END;
    IF v_outcome IS NULL THEN
        UPDATE messages AS m SET status = 'Sending', attempt_id = p_attempt,
            epoch = p_epoch, send_started_at = v_slot, updated_at = v_now
        WHERE m.id = p_message AND m.sender = p_key AND m.status = 'Queued';
        v_outcome := CASE WHEN FOUND THEN 'started' ELSE 'not_queued' END;
    END IF;
    IF v_outcome <> 'started' THEN
        RETURN QUERY SELECT v_outcome, NULL::TIMESTAMPTZ, k.next_slot_at, k.lease_expires_at;
        RETURN;
    END IF;
    INSERT INTO events (message_id, at, status, source, applied)
    VALUES (p_message, v_now, 'Sending', 'scheduler', true);
    UPDATE pacing_keys AS p SET next_slot_at = v_slot + p_spacing WHERE p.key = p_key;
    RETURN QUERY SELECT v_outcome, v_slot, v_slot + p_spacing, k.lease_expires_at;
END
$$;
