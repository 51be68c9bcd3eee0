-- What one worker changes that the others must learn of (docs/scale-out.md): a campaign
-- created, or whose state changed (a pause, a resumption, a cancellation, an import's
-- end), notifies the channel dispatcher_changes with 'campaign:' and its id; an
-- automation rule added or removed notifies it with 'rules'. Sent when the transaction
-- commits, once per payload. Listeners: dispatcher/store/postgres/wakes.py.
CREATE FUNCTION dispatcher_notify_campaign() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dispatcher_changes', 'campaign:' || NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER campaigns_created AFTER INSERT ON campaigns
FOR EACH ROW EXECUTE FUNCTION dispatcher_notify_campaign();

-- Only a change of state: the projected finish a leader rewrites notifies nobody.
CREATE TRIGGER campaigns_changed AFTER UPDATE OF state ON campaigns
FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION dispatcher_notify_campaign();

CREATE FUNCTION dispatcher_notify_rules() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dispatcher_changes', 'rules');
    RETURN NULL;
END
$$;

CREATE TRIGGER automation_rules_changed AFTER INSERT OR DELETE ON automation_rules
FOR EACH STATEMENT EXECUTE FUNCTION dispatcher_notify_rules();
