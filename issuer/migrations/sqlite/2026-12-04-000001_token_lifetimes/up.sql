-- The access-token lifetimes the replicas issue with, each announced until the last token it
-- may have issued expires: a revocation entry must outlive every token of its session or user,
-- whatever the lifetime of the replica that writes it (a lowered access_token_ttl_secs, or a
-- rolling deploy that changes it).
CREATE TABLE token_lifetimes (
    ttl_secs BIGINT PRIMARY KEY NOT NULL,
    announced_until BIGINT NOT NULL
);
