-- The periodic cleanup forgets a rotated refresh token's nonce once its grace window has passed
-- (a dump of the database and an old token must not derive the session's current token). Only
-- the rows rotated within the last minutes hold one, so this index stays small; building it reads
-- the table once and holds writes to `refresh_tokens` (on SQLite, every write) meanwhile.
-- `IF NOT EXISTS`, as the index before it (docs/deploy.md).
CREATE INDEX IF NOT EXISTS refresh_tokens_nonce_held ON refresh_tokens (rotated_at) WHERE rotation_nonce IS NOT NULL;
