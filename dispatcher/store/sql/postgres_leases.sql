-- Workers and the leases on pacing keys. Every time is the database's clock; a worker
-- keeps its own monotonic deadline for each lease (dispatcher/store/postgres/leases.py).
--
-- Every statement that waits for a key's row lock takes its rows in key order (a
-- locking read ORDER BY key, then the update), as dispatcher_start_send and the
-- store's next slots do: two statements that lock the same keys in different orders
-- (an UPDATE locks them in the order it finds them) deadlock. Those that must not wait
-- skip the rows locked (SKIP LOCKED).

-- name: free_worker_keys
-- Give back every key the worker holds, locked in key order (a clean stop; or a row
-- left under the same id by an earlier run, which this run never saw).
WITH mine AS (
    SELECT key FROM pacing_keys WHERE owner = $1 ORDER BY key FOR UPDATE
)
UPDATE pacing_keys AS p SET owner = NULL, lease_expires_at = NULL
FROM mine WHERE p.key = mine.key
RETURNING p.key;

-- name: register_worker
-- A worker's id is new at every start (what a row left under it held is given back
-- first: free_worker_keys).
INSERT INTO workers (id, address, started_at, heartbeat_at)
VALUES ($1, $2, now(), now())
ON CONFLICT (id) DO UPDATE
SET address = excluded.address, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at
RETURNING clock_timestamp() AS now;  -- the database's clock, which the worker keeps

-- name: deregister_worker
-- After free_worker_keys.
DELETE FROM workers WHERE id = $1;

-- name: add_pacing_keys
INSERT INTO pacing_keys (key) SELECT unnest($1::TEXT[]) ON CONFLICT (key) DO NOTHING;

-- name: renew_leases
-- The heartbeat and every lease the worker still holds, in one statement. A lease that
-- has lapsed is not renewed: it may have been taken, and is acquired again (a new epoch).
-- One row at least: whether the worker's row is there, and a lease renewed per row;
-- each with the database's clock, which the worker keeps.
-- The keys are locked in key order (a send starting on one of them holds its row).
WITH beat AS (
    UPDATE workers SET heartbeat_at = now() WHERE id = $1 RETURNING id
), mine AS (
    SELECT p.key FROM pacing_keys AS p, beat
    WHERE p.owner = beat.id AND p.lease_expires_at > now()
    ORDER BY p.key
    FOR UPDATE OF p
), renewed AS (
    UPDATE pacing_keys AS p SET lease_expires_at = now() + make_interval(secs => $2)
    FROM mine
    WHERE p.key = mine.key
    RETURNING p.key, p.epoch, p.next_slot_at
)
SELECT EXISTS (SELECT 1 FROM beat) AS registered, renewed.key, renewed.epoch,
       renewed.next_slot_at, clock_timestamp() AS now
FROM (SELECT 1) AS one LEFT JOIN renewed ON true;

-- name: acquire_leases
-- Free or lapsed keys with work (a message Queued, or Sending and to be reconciled), up
-- to the worker's fair share of the keys in play among the live workers and to $3, in
-- one statement; a key another worker is taking at this moment is skipped, not waited
-- for. Each one taken gets a new epoch. Work is probed key by key (LIMIT 1, Queued and
-- Sending apart, each on a partial index of its own): the cost follows the number of
-- keys, not the depth of the queues. One row at least: the share, and a key taken
-- per row (NULL when none was).
WITH live AS (
    SELECT GREATEST(COUNT(*), 1) AS n FROM workers
    WHERE heartbeat_at > now() - make_interval(secs => $2)
), in_play AS (
    SELECT COUNT(*) AS n FROM pacing_keys AS p
    WHERE NOT p.paused AND (
        p.lease_expires_at > now()
        OR (SELECT 1 FROM messages AS m
            WHERE m.sender = p.key AND m.status = 'Queued' LIMIT 1) IS NOT NULL
        OR (SELECT 1 FROM messages AS m
            WHERE m.sender = p.key AND m.status = 'Sending' LIMIT 1) IS NOT NULL)
), held AS (
    SELECT COUNT(*) AS n FROM pacing_keys WHERE owner = $1 AND lease_expires_at > now()
), share AS (
    SELECT CEIL(in_play.n::NUMERIC / live.n)::INTEGER AS n FROM in_play, live
), free AS (
    SELECT p.key FROM pacing_keys AS p
    WHERE NOT p.paused
      AND (p.owner IS NULL OR p.lease_expires_at IS NULL OR p.lease_expires_at <= now())
      AND ((SELECT 1 FROM messages AS m
            WHERE m.sender = p.key AND m.status = 'Queued' LIMIT 1) IS NOT NULL
           OR (SELECT 1 FROM messages AS m
               WHERE m.sender = p.key AND m.status = 'Sending' LIMIT 1) IS NOT NULL)
    ORDER BY p.key
    LIMIT (SELECT GREATEST(LEAST(share.n - held.n, $3), 0) FROM share, held)
    FOR UPDATE OF p SKIP LOCKED
), taken AS (
    UPDATE pacing_keys AS p
    SET owner = $1, epoch = p.epoch + 1, lease_expires_at = now() + make_interval(secs => $2)
    FROM free WHERE p.key = free.key
    RETURNING p.key, p.epoch, p.next_slot_at
)
SELECT share.n AS share, taken.key, taken.epoch, taken.next_slot_at
FROM share LEFT JOIN taken ON true;

-- name: shed_leases
-- Give back the held keys beyond the share $2 (workers joined): never one with a send
-- in flight, the last keys first.
WITH held AS (
    SELECT COUNT(*) AS n FROM pacing_keys WHERE owner = $1 AND lease_expires_at > now()
), surplus AS (
    SELECT p.key FROM pacing_keys AS p
    WHERE p.owner = $1 AND p.lease_expires_at > now()
      AND NOT EXISTS (SELECT 1 FROM messages AS m
                      WHERE m.sender = p.key AND m.status = 'Sending')
    ORDER BY p.key DESC
    LIMIT (SELECT GREATEST(held.n - $2, 0) FROM held)
    FOR UPDATE OF p SKIP LOCKED
)
UPDATE pacing_keys AS p SET owner = NULL, lease_expires_at = NULL
FROM surplus WHERE p.key = surplus.key AND p.owner = $1
RETURNING p.key;

-- name: release_leases
-- Give back the keys named with the epochs they were held under; a key since taken
-- by another worker (a later epoch) is left alone. Locked in key order.
WITH mine AS (
    SELECT p.key FROM pacing_keys AS p
    JOIN unnest($2::TEXT[], $3::BIGINT[]) AS r(key, epoch) ON p.key = r.key
    WHERE p.epoch = r.epoch AND p.owner = $1
    ORDER BY p.key
    FOR UPDATE OF p
)
UPDATE pacing_keys AS p SET owner = NULL, lease_expires_at = NULL
FROM mine WHERE p.key = mine.key
RETURNING p.key;

-- name: start_sends
-- dispatcher_start_send for each send given, in one statement (one transaction): the
-- caller orders them by key, so the keys' row locks are taken in one order everywhere.
-- Each send names its intended slot ($8, NULL: the database's clock at the start).
SELECT r.outcome, r.started_at, r.next_slot_at, r.lease_expires_at
FROM unnest($2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::FLOAT8[],
            $8::TIMESTAMPTZ[])
    WITH ORDINALITY AS s(key, epoch, message, attempt, spacing, slot, i)
CROSS JOIN LATERAL dispatcher_start_send(
    $1, s.key, s.epoch, s.message, s.attempt, make_interval(secs => s.spacing),
    make_interval(secs => $7), s.slot
) AS r
ORDER BY s.i;

-- name: key_work
-- Each key of $1 as it is now: its texts Queued (counted on the queue's index), those
-- Sending with the epoch each was started under, its next slot and pause flag.
SELECT p.key, p.next_slot_at, p.paused,
       (SELECT count(*) FROM messages AS m
        WHERE m.sender = p.key AND m.status = 'Queued') AS queued,
       s.ids AS sending_ids, s.epochs AS sending_epochs
FROM pacing_keys AS p
LEFT JOIN LATERAL (
    SELECT array_agg(m.id ORDER BY m.id) AS ids, array_agg(m.epoch ORDER BY m.id) AS epochs
    FROM messages AS m WHERE m.sender = p.key AND m.status = 'Sending'
) AS s ON true
WHERE p.key = ANY($1::TEXT[])
ORDER BY p.key;
