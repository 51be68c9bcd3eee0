-- New work wakes the worker that owns its key (docs/scale-out.md): a text queued on a
-- pacing key notifies the channel dispatcher_work with the key as payload. The database
-- delivers one notification per channel and payload per transaction, so a batch of texts
-- on one key is one notification, sent when the batch commits (none if it rolls back).
-- Listeners: dispatcher/store/postgres/wakes.py.
CREATE FUNCTION dispatcher_notify_queued_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dispatcher_work', q.sender)
    FROM (SELECT DISTINCT n.sender FROM queued_rows AS n WHERE n.status = 'Queued') AS q;
    RETURN NULL;
END
$$;

-- A batch of new texts: once per statement, over the rows it wrote.
CREATE TRIGGER messages_queued_inserted AFTER INSERT ON messages
REFERENCING NEW TABLE AS queued_rows
FOR EACH STATEMENT EXECUTE FUNCTION dispatcher_notify_queued_rows();

CREATE FUNCTION dispatcher_notify_queued_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dispatcher_work', NEW.sender);
    RETURN NULL;
END
$$;

-- A text that comes back to the queue (a Pending one accepted, a send retried): the
-- condition is checked without calling the function, so other changes cost nothing.
CREATE TRIGGER messages_queued_again AFTER UPDATE OF status ON messages
FOR EACH ROW WHEN (NEW.status = 'Queued' AND OLD.status IS DISTINCT FROM 'Queued')
EXECUTE FUNCTION dispatcher_notify_queued_row();

-- The sends of each key in the last minute (dispatcher workers): at most one a second
-- per key, so a key's count reads at most about 60 entries of this index.
CREATE INDEX messages_sender_started ON messages (sender, send_started_at)
WHERE send_started_at IS NOT NULL;
