-- Voice calls: named queries of the PostgreSQL store (dispatcher/store/postgres/calls.py).

-- part: append_call_events
-- A call's events, given as one array per column ($1 to $10 of the writes that include
-- it: call ids, times, statuses, results, steps, reasons, provider codes, sources,
-- applied, details), appended in their order.
INSERT INTO call_events (
    call_id, at, status, result, step, reason, provider_code, source, applied, detail
)
SELECT e.call_id, e.at, e.status, e.result, e.step, e.reason, e.provider_code,
       e.source, e.applied, e.detail
FROM unnest($1::TEXT[], $2::TIMESTAMPTZ[], $3::TEXT[], $4::TEXT[], $5::INTEGER[],
            $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::BOOLEAN[], $10::TEXT[])
    WITH ORDINALITY AS e (call_id, at, status, result, step, reason, provider_code,
                          source, applied, detail, n)
ORDER BY e.n

-- name: insert_call
-- The call and its first events in one statement: a refused call writes no event.
WITH logged AS (
    -- include: append_call_events
)
INSERT INTO calls (
    id, account, sender, recipient, script, script_name, lane, status, reason,
    provider_code, provider_id, attempt_id, placed_at, answered_by, script_done,
    idempotency_key, fingerprint, "trigger", accepted_at, updated_at, campaign_id, expires_at
) VALUES ($11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26,
          $27, $28, $29, $30, $31, $32)
RETURNING seq;

-- name: update_call
-- The events appended, the call's projection as the caller judged it (its mutable
-- columns replaced; an unknown call stays unknown) and an account's next slot moved,
-- only ever later ($19 NULL: none), in one statement.
WITH logged AS (
    -- include: append_call_events
), projected AS (
    UPDATE calls SET
        status = $12, reason = $13, provider_code = $14, provider_id = $15, attempt_id = $16,
        placed_at = $17, answered_by = $18, script_done = $19, updated_at = $20
    WHERE id = $11
)
INSERT INTO call_slots (account, next_slot_at)
SELECT $21::TEXT, $22::TIMESTAMPTZ WHERE $21::TEXT IS NOT NULL
ON CONFLICT (account) DO UPDATE
SET next_slot_at = GREATEST(call_slots.next_slot_at, excluded.next_slot_at);

-- name: get_call
SELECT * FROM calls WHERE id = $1;

-- name: call_by_provider_id
SELECT * FROM calls WHERE provider_id = $1;

-- name: call_by_idempotency_key
SELECT * FROM calls WHERE idempotency_key = $1;

-- name: call_history
SELECT call_id, at, status, result, step, reason, provider_code, source, applied, detail
FROM call_events WHERE call_id = $1 ORDER BY id;

-- name: calls_in_status
SELECT * FROM calls WHERE status = ANY($1::TEXT[]) ORDER BY seq LIMIT $2;

-- name: find_calls
SELECT * FROM calls WHERE recipient = $1 ORDER BY seq DESC LIMIT $2;

-- name: call_counts
SELECT status, COUNT(*) AS n FROM calls GROUP BY status;

-- name: call_slots
SELECT account, next_slot_at FROM call_slots ORDER BY account;
