-- An email campaign's subject and HTML part (its text part is the template).
ALTER TABLE campaigns ADD COLUMN subject TEXT;
ALTER TABLE campaigns ADD COLUMN html TEXT;
