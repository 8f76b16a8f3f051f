"""Infrastructure with no product rules: transactions, Redis and the RQ queues, the worker,
the per-process cache. Domain packages import from here; nothing here imports a domain."""
