-- An address's emails, newest first: its soft bounces in a row are counted from them.
CREATE INDEX emails_recipient ON emails (recipient, seq);
