-- Named queries of the PostgreSQL store: what the operator's status reads.

-- name: probe
INSERT INTO store_probe (id, at) VALUES (1, clock_timestamp())
ON CONFLICT (id) DO UPDATE SET at = excluded.at;
