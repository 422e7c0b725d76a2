-- Private signing keys live in the database, sealed under the key-encryption key from
-- configuration, so every replica reads the same key ring.
ALTER TABLE signing_keys ADD COLUMN sealed_private_jwk TEXT;
