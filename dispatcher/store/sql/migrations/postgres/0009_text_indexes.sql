-- The texts' indexes SQLite has (migrations 0002, 0003, 0005, 0006 and 0017 there), and
-- the one-send-in-flight index narrowed to the sends started under a lease.
-- The same-second rule reloads the texts accepted in the last window at start-up.
CREATE INDEX messages_accepted ON messages (accepted_at) WHERE accepted;
-- Texts a contact sent us are found by the contact's number too.
CREATE INDEX messages_inbound ON messages (sender, seq) WHERE status IN ('Receiving', 'Received');
CREATE INDEX messages_campaign ON messages (campaign_id, seq) WHERE campaign_id IS NOT NULL;
-- The engagement metrics read the counted events by time and the texts automations
-- made by their trigger.
CREATE INDEX messages_trigger ON messages ("trigger") WHERE "trigger" IS NOT NULL;
CREATE INDEX events_metrics ON events (at)
    WHERE applied
    AND status IN ('Sent', 'Delivered', 'Undelivered', 'Unreachable', 'Failed', 'Completed');
-- The operator's recent errors: the applied error events of texts, newest first.
CREATE INDEX events_errors ON events (id)
    WHERE applied AND status IN ('Failed', 'Undelivered', 'Unreachable');

-- At most one text Sending per pacing key among those started under a lease (an epoch):
-- whoever writes, a second send of a leased key cannot start while one is in flight.
-- A store without leases (one process, its engine pacing each number) may have
-- several texts of one number Sending, as the memory and SQLite stores do.
DROP INDEX messages_one_sending;
CREATE UNIQUE INDEX messages_one_sending ON messages (sender)
    WHERE status = 'Sending' AND epoch IS NOT NULL;
