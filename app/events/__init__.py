"""Events: the outbox, the event log, the Redis hub, engine signals."""
