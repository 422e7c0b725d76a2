DROP INDEX refresh_tokens_nonce_held;
