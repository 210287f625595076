"""GraphQL types of accounts: the User node, payloads, KYC, audit, API keys."""
