DROP TABLE lockouts_by_client;
