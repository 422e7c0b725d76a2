-- The cleanup finds ended sessions by `expires_at <= c OR revoked_at <= c`. With an index on
-- `expires_at` alone that is a scan of every session, which grows with the table and, on a
-- large enough one, outlasts the statement deadline (`db_timeout_ms`) and fails every cleanup
-- tick. Partial: only revoked sessions have a `revoked_at`. Building it reads the table once
-- and holds writes to `sessions` (on SQLite, every write) meanwhile.
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
