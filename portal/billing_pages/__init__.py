"""The portal's Billing pages: plan, plan changes, cancellation, invoices (the service layer is portal.billing)."""
