-- How far the automations have matched the durable history: the last text event and
-- the last call event they handled, written with the runs those events made. One row
-- while rules exist; none while there are no rules (nothing is followed).
CREATE TABLE automation_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    text_event INTEGER NOT NULL,        -- events.id
    call_event INTEGER NOT NULL         -- call_events.id
);
