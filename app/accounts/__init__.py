"""Accounts: registration, sessions, two-factor, API keys, KYC, audit, rate limits."""
