-- New work waking the workers (dispatcher/store/postgres/wakes.py): texts queued on a
-- key notify the channel dispatcher_work (migration 0014).

-- name: keys_with_work
-- Every key not paused with a text Queued (probed key by key on the queue's index):
-- what a listener reports when it starts listening, and while it cannot.
SELECT p.key FROM pacing_keys AS p
WHERE NOT p.paused
  AND (SELECT 1 FROM messages AS m WHERE m.sender = p.key AND m.status = 'Queued' LIMIT 1)
      IS NOT NULL
ORDER BY p.key;

-- name: wakes_check
SELECT 1;
