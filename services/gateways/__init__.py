"""Narrow interfaces to Stripe, Google Calendar and mail (base), their real adapters and the sandbox implementations."""
