"""Account, KYC and API key resolvers."""
