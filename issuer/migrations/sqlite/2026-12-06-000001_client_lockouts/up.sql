-- Lockout per account and client: a row per (account, client address; an IPv6 /64) holds that
-- client's failures on the account, and the row with an empty `client` counts every client's
-- under a looser threshold (`store::lockout`). Before, one row per account let anyone who knew
-- a username keep the account locked for its owner too. `known_until`: the client logged in
-- to the account, and the account's row does not hold it out until then.
-- The existing rows become the accounts' rows, their locks kept. `lockouts` is left to replicas
-- of the previous version during a rolling upgrade; this version no longer reads it.
CREATE TABLE lockouts_by_client (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    window_start BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0,
    lock_count INTEGER NOT NULL DEFAULT 0,
    known_until BIGINT NOT NULL DEFAULT 0,
    UNIQUE (user_id, client)
);
-- Cleanup looks for rows whose client is no longer known (`known_until` past) first: a known
-- client's row stays 30 days, and without this every tick would read them all.
CREATE INDEX lockouts_by_client_known ON lockouts_by_client (known_until);
INSERT INTO lockouts_by_client (user_id, client, failures, window_start, locked_until, lock_count)
SELECT user_id, '', failures, window_start, locked_until, lock_count FROM lockouts;
