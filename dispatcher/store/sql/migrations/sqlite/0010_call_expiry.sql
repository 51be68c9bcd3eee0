-- A call not placed by this time is not placed (e.g. its contact's send window closed).
ALTER TABLE calls ADD COLUMN expires_at INTEGER;
