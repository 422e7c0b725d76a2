ALTER TABLE signing_keys DROP COLUMN sealed_private_jwk;
