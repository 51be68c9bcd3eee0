-- Voice links a text or an email carries, and their plays (as the SQLite schema:
-- migrations 0005 and 0006 there).
CREATE TABLE voice_links (
    token TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,           -- the text or email that carries the link
    campaign_id TEXT,
    message TEXT NOT NULL,              -- what it plays: text to say or an audio URL
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE link_plays (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX link_plays_token ON link_plays (token, id);
-- The engagement metrics read the plays by time.
CREATE INDEX link_plays_at ON link_plays (at);
