-- What a campaign's voice links play ({voice_link} in its template).
ALTER TABLE campaigns ADD COLUMN voice_message TEXT;
