-- The texts Sending of one pacing key, found on an index of their own. Every start of a
-- send asks whether its key has one (dispatcher_start_send: busy), and the leases' turn
-- asks it of every key it holds or may take (key_work, acquire_leases, shed_leases).
-- messages_one_sending cannot answer it (it holds only the texts started under a lease,
-- epoch IS NOT NULL), so each probe read the whole of messages_status for 'Sending':
-- an entry for every text that has passed through Sending and was not yet vacuumed.
-- With 2,000 busy numbers x 10 texts on one worker, a probe took about 4 ms (21,814
-- entries read) and the turn's key_work 9.9 s for its 2,000 keys; on this index, 0.08 ms
-- and 42 ms. A key's entries are its own texts only.
CREATE INDEX messages_sending ON messages (sender) WHERE status = 'Sending';
