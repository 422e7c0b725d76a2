DROP INDEX audit_events_user;
