"""The double-entry ledger: its rules, the one write path, idempotency."""
