"""GraphQL types of staking."""
