DROP TABLE audit_events;
DROP TABLE lockouts;
DROP TABLE signing_keys;
DROP TABLE revocations;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE users;
