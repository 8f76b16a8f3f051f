"""Card payments through Stripe: the gateway, webhooks, saved cards, paying invoices, dunning."""
