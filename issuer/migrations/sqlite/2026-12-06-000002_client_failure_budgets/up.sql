-- Each client's budget of failed password checks (`failed_logins_per_minute`), one for every
-- replica: when the client's failures are all paid off, in Unix ms (`store::failure_budget`).
-- Before, each replica kept its own in memory, and N replicas allowed a client N times it.
CREATE TABLE client_failure_budgets (
    client TEXT PRIMARY KEY,
    paid_off_at BIGINT NOT NULL
);
-- Cleanup deletes the rows that are paid off.
CREATE INDEX client_failure_budgets_paid_off ON client_failure_budgets (paid_off_at);
