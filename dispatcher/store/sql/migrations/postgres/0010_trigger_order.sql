-- The engagement metrics find what one automation made by a range of triggers
-- ([automation:<rule>:, automation:<rule>;)) compared byte by byte (COLLATE "C"), since
-- a database's locale may order punctuation otherwise; the trigger indexes sort the
-- same way, so that range is an index scan whatever the locale.
DROP INDEX messages_trigger;
CREATE INDEX messages_trigger ON messages ("trigger" COLLATE "C") WHERE "trigger" IS NOT NULL;
DROP INDEX calls_trigger;
CREATE INDEX calls_trigger ON calls ("trigger" COLLATE "C") WHERE "trigger" IS NOT NULL;
DROP INDEX emails_trigger;
CREATE INDEX emails_trigger ON emails ("trigger" COLLATE "C") WHERE "trigger" IS NOT NULL;
