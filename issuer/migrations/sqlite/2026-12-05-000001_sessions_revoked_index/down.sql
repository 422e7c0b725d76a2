DROP INDEX sessions_revoked;
