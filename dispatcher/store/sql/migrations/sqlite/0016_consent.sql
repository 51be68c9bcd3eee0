-- The consent ledger: every opt-out and opt-in of every channel (text, voice, email),
-- appended and never changed; the current state is derived from it in recorded order
-- (dispatcher/core/consent.py). The Do Not Text list becomes its text view.
CREATE TABLE consent (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- recorded order
    id TEXT NOT NULL UNIQUE,
    contact TEXT NOT NULL,              -- an E.164 number or a lower-case email address
    channel TEXT NOT NULL,              -- text, voice, email
    action TEXT NOT NULL,               -- opt_out, opt_in
    scope TEXT NOT NULL,                -- all, sender, campaign
    scope_value TEXT NOT NULL,          -- the sender or campaign; '' for all
    source TEXT NOT NULL,               -- stop_reply, carrier, hard_bounce, operator, ...
    who TEXT NOT NULL,
    at INTEGER NOT NULL,                -- microseconds since 1970-01-01 UTC
    reason TEXT
);
CREATE INDEX consent_contact ON consent (contact, seq);

-- The Do Not Text list so far: each number's entry becomes a text opt-out for every
-- sender, with the source its provenance names.
INSERT INTO consent (id, contact, channel, action, scope, scope_value, source, who, at, reason)
SELECT 'cns_dnt_' || number, number, 'text', 'opt_out', 'all', '',
       CASE added_by WHEN 'contact' THEN 'stop_reply' WHEN 'carrier' THEN 'carrier'
                     ELSE 'operator' END,
       added_by, added_at, reason
FROM do_not_text ORDER BY added_at, number;
DROP TABLE do_not_text;

-- The Do Not Text view: for each number, the earliest text opt-out for every sender
-- that no later text opt-in for every sender took back.
CREATE VIEW do_not_text AS
SELECT o.contact AS number, MIN(o.seq) AS seq, o.at AS added_at, o.who AS added_by,
       o.reason AS reason
FROM consent AS o
WHERE o.channel = 'text' AND o.scope = 'all' AND o.action = 'opt_out'
  AND NOT EXISTS (
      SELECT 1 FROM consent AS i
      WHERE i.contact = o.contact AND i.channel = 'text' AND i.scope = 'all'
        AND i.action = 'opt_in' AND i.seq > o.seq
  )
GROUP BY o.contact;
