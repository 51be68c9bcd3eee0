-- The consent ledger and its Do Not Text view (migration 0016).

-- name: consent_record
INSERT INTO consent (id, contact, channel, action, scope, scope_value, source, who, at, reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: consent_of
SELECT * FROM consent WHERE contact IN (SELECT value FROM json_each(?)) ORDER BY seq;

-- name: consent_entries
SELECT * FROM consent WHERE seq > ? ORDER BY seq LIMIT ?;

-- name: dnt_add
INSERT INTO consent (id, contact, channel, action, scope, scope_value, source, who, at, reason)
SELECT ?1, ?2, 'text', 'opt_out', 'all', '', 'operator', ?3, ?4, ?5
WHERE NOT EXISTS (SELECT 1 FROM do_not_text WHERE number = ?2);

-- name: dnt_remove
INSERT INTO consent (id, contact, channel, action, scope, scope_value, source, who, at, reason)
SELECT ?1, ?2, 'text', 'opt_in', 'all', '', 'operator', ?3, ?4, NULL
WHERE EXISTS (SELECT 1 FROM do_not_text WHERE number = ?2);

-- name: dnt_get
SELECT number, added_at, added_by, reason FROM do_not_text WHERE number = ?;

-- name: dnt_many
SELECT number, added_at, added_by, reason FROM do_not_text
WHERE number IN (SELECT value FROM json_each(?));

-- name: dnt_list
SELECT number, added_at, added_by, reason FROM do_not_text ORDER BY added_at LIMIT ?;

-- name: consent_latest_at
SELECT MAX(at) FROM consent WHERE contact = ?;
