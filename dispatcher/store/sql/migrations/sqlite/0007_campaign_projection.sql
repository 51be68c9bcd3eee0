-- What a campaign costs and when it should finish, counted at import.
ALTER TABLE campaigns ADD COLUMN segments INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN projected_finish INTEGER;
