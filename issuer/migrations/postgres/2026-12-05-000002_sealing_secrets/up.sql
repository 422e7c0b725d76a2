-- Which key-encryption keys the replicas have run with, by fingerprint (a hash of the secret,
-- never the secret): a command that seals signing keys refuses a secret no replica holds, such
-- as a mistyped one given with the real one as a fallback.
CREATE TABLE sealing_secrets (
    fingerprint TEXT PRIMARY KEY NOT NULL,
    last_seen BIGINT NOT NULL
);
