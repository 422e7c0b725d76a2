-- Whose access token a token entry revokes (the token's `sub`; empty for the other kinds), so
-- the revocation service can bound how many entries one user's revocations keep live: past the
-- bound a revocation becomes one cut-off of that user's tokens (`revoker::Revocations::token`).
-- Rows written before this migration have none and are not counted.
ALTER TABLE revocations ADD COLUMN owner TEXT;
CREATE INDEX revocations_owner ON revocations (owner, expires_at) WHERE owner IS NOT NULL;
