"""Plans, subscriptions, invoices and billing runs."""
