DROP TABLE client_failure_budgets;
