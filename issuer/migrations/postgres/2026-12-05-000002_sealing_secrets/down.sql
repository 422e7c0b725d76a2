DROP TABLE sealing_secrets;
