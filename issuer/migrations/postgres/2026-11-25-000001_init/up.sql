-- Times are Unix seconds (BIGINT) so that one query path serves PostgreSQL and SQLite.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

-- A login session is a refresh-token family; its id is the `sid` claim.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Refresh tokens are stored only as SHA-256 hashes. `rotation_nonce` lets a retry within the
-- grace window re-derive the same successor without the successor ever being stored.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    parent_hash TEXT,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT,
    rotation_nonce TEXT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- kind: 1 token (jti), 2 session (sid), 3 user (sub, with issued_before).
CREATE TABLE revocations (
    seq BIGSERIAL PRIMARY KEY,
    kind SMALLINT NOT NULL,
    subject TEXT NOT NULL,
    issued_before BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX revocations_lookup ON revocations (subject, kind);
CREATE INDEX revocations_expires ON revocations (expires_at);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE lockouts (
    user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    failures INTEGER NOT NULL DEFAULT 0,
    window_start BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0,
    lock_count INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
