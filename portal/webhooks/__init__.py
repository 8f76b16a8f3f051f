"""Outbound webhooks: the event catalog, the outbox every change writes its events into, the
endpoints and their signed, retried deliveries."""
