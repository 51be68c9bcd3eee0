-- The consent ledger and its Do Not Text view (migration 0006), on PostgreSQL.

-- name: consent_record
INSERT INTO consent (id, contact, channel, action, scope, scope_value, source, who, at, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10);

-- name: consent_of
SELECT * FROM consent WHERE contact = ANY($1::TEXT[]) ORDER BY seq;

-- name: consent_entries
SELECT * FROM consent WHERE seq > $1 ORDER BY seq LIMIT $2;

-- name: dnt_lock
-- Held to the end of the transaction that adds or removes a number: of two workers
-- changing one number's entry at once, the second sees what the first wrote. The two-key
-- form of advisory locks is a key space apart from the one-key locks (migrations).
SELECT pg_advisory_xact_lock(16, hashtext($1));

-- name: dnt_add
INSERT INTO consent (id, contact, channel, action, scope, scope_value, source, who, at, reason)
SELECT $1, $2, 'text', 'opt_out', 'all', '', 'operator', $3, $4::TIMESTAMPTZ, $5
WHERE NOT EXISTS (SELECT 1 FROM do_not_text WHERE number = $2);

-- name: dnt_remove
-- At $4, or when not given at the time of the contact's latest entry.
INSERT INTO consent (id, contact, channel, action, scope, scope_value, source, who, at, reason)
SELECT $1, $2, 'text', 'opt_in', 'all', '', 'operator', $3,
       COALESCE($4::TIMESTAMPTZ, (SELECT c.at FROM consent AS c WHERE c.contact = $2
                                  ORDER BY c.seq DESC LIMIT 1)),
       NULL
WHERE EXISTS (SELECT 1 FROM do_not_text WHERE number = $2);

-- name: dnt_get
SELECT number, added_at, added_by, reason FROM do_not_text WHERE number = $1;

-- name: dnt_many
SELECT number, added_at, added_by, reason FROM do_not_text WHERE number = ANY($1::TEXT[]);

-- name: dnt_list
SELECT number, added_at, added_by, reason FROM do_not_text ORDER BY added_at, seq LIMIT $1;
