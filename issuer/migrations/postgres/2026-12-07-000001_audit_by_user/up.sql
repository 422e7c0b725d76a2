-- The admin view of a user's events (`GET /v1/admin/users/<id>/events`) reads that user's newest
-- rows. With an index on `at` alone it would read the table backwards through everyone's events
-- until it found them. Building it reads the table once and holds writes to `audit_events`
-- (on SQLite, every write) meanwhile. `IF NOT EXISTS`: on a large table the operator builds it
-- beforehand without holding writes (`CREATE INDEX CONCURRENTLY`, docs/deploy.md), and this
-- finds it.
CREATE INDEX IF NOT EXISTS audit_events_user ON audit_events (user_id, id);
