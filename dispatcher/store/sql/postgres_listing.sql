-- Texts and calls listed with filters, newest first (dispatcher/store/postgres/listing.py).
-- Parameters: $1 recipient, $2 sender, $3 status, $4 campaign id (each NULL: any), $5
-- since and $6 until (NULL: no bound), $7 the seq to stay below, $8 the limit. One query
-- per index that can lead: the recipient's, the campaign's and the status's (each by
-- seq), else the table itself walked from its newest row.

-- name: list_messages_by_recipient
SELECT * FROM messages
WHERE recipient = $1
  AND ($2::TEXT IS NULL OR sender = $2)
  AND ($3::TEXT IS NULL OR status = $3)
  AND ($4::TEXT IS NULL OR campaign_id = $4)
  AND ($5::TIMESTAMPTZ IS NULL OR accepted_at >= $5)
  AND ($6::TIMESTAMPTZ IS NULL OR accepted_at < $6)
  AND seq < $7
ORDER BY seq DESC LIMIT $8;

-- name: list_messages_by_campaign
SELECT * FROM messages
WHERE campaign_id = $4
  AND ($1::TEXT IS NULL OR recipient = $1)
  AND ($2::TEXT IS NULL OR sender = $2)
  AND ($3::TEXT IS NULL OR status = $3)
  AND ($5::TIMESTAMPTZ IS NULL OR accepted_at >= $5)
  AND ($6::TIMESTAMPTZ IS NULL OR accepted_at < $6)
  AND seq < $7
ORDER BY seq DESC LIMIT $8;

-- name: list_messages_by_status
SELECT * FROM messages
WHERE status = $3
  AND ($1::TEXT IS NULL OR recipient = $1)
  AND ($2::TEXT IS NULL OR sender = $2)
  AND ($4::TEXT IS NULL OR campaign_id = $4)
  AND ($5::TIMESTAMPTZ IS NULL OR accepted_at >= $5)
  AND ($6::TIMESTAMPTZ IS NULL OR accepted_at < $6)
  AND seq < $7
ORDER BY seq DESC LIMIT $8;

-- name: list_messages
SELECT * FROM messages
WHERE ($1::TEXT IS NULL OR recipient = $1)
  AND ($2::TEXT IS NULL OR sender = $2)
  AND ($3::TEXT IS NULL OR status = $3)
  AND ($4::TEXT IS NULL OR campaign_id = $4)
  AND ($5::TIMESTAMPTZ IS NULL OR accepted_at >= $5)
  AND ($6::TIMESTAMPTZ IS NULL OR accepted_at < $6)
  AND seq < $7
ORDER BY seq DESC LIMIT $8;

-- name: list_calls_by_recipient
SELECT * FROM calls
WHERE recipient = $1
  AND ($2::TEXT IS NULL OR sender = $2)
  AND ($3::TEXT IS NULL OR status = $3)
  AND ($4::TEXT IS NULL OR campaign_id = $4)
  AND ($5::TIMESTAMPTZ IS NULL OR accepted_at >= $5)
  AND ($6::TIMESTAMPTZ IS NULL OR accepted_at < $6)
  AND seq < $7
ORDER BY seq DESC LIMIT $8;

-- name: list_calls_by_campaign
SELECT * FROM calls
WHERE campaign_id = $4
  AND ($1::TEXT IS NULL OR recipient = $1)
  AND ($2::TEXT IS NULL OR sender = $2)
  AND ($3::TEXT IS NULL OR status = $3)
  AND ($5::TIMESTAMPTZ IS NULL OR accepted_at >= $5)
  AND ($6::TIMESTAMPTZ IS NULL OR accepted_at < $6)
  AND seq < $7
ORDER BY seq DESC LIMIT $8;

-- name: list_calls_by_status
SELECT * FROM calls
WHERE status = $3
  AND ($1::TEXT IS NULL OR recipient = $1)
  AND ($2::TEXT IS NULL OR sender = $2)
  AND ($4::TEXT IS NULL OR campaign_id = $4)
  AND ($5::TIMESTAMPTZ IS NULL OR accepted_at >= $5)
  AND ($6::TIMESTAMPTZ IS NULL OR accepted_at < $6)
  AND seq < $7
ORDER BY seq DESC LIMIT $8;

-- name: list_calls
SELECT * FROM calls
WHERE ($1::TEXT IS NULL OR recipient = $1)
  AND ($2::TEXT IS NULL OR sender = $2)
  AND ($3::TEXT IS NULL OR status = $3)
  AND ($4::TEXT IS NULL OR campaign_id = $4)
  AND ($5::TIMESTAMPTZ IS NULL OR accepted_at >= $5)
  AND ($6::TIMESTAMPTZ IS NULL OR accepted_at < $6)
  AND seq < $7
ORDER BY seq DESC LIMIT $8;
