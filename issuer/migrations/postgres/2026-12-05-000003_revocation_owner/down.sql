DROP INDEX revocations_owner;
ALTER TABLE revocations DROP COLUMN owner;
