-- The OAuth client a session was started for (the token request's `client_id`, RFC 6749
-- §3.2.1), named in its access tokens (RFC 9068 §2.2); a refresh naming another client is
-- refused. NULL for a session whose login named no client, and for every session started
-- before this migration.
-- Adding a nullable column without a default rewrites nothing.
ALTER TABLE sessions ADD COLUMN client_id TEXT;
