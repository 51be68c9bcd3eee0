-- The same-second rule reloads the texts accepted in the last window at start-up.
CREATE INDEX messages_accepted ON messages (accepted_at) WHERE accepted = 1;
