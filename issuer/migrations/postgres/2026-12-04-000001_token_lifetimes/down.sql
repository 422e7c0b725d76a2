DROP TABLE token_lifetimes;
