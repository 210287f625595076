"""GraphQL types of notifications and price alerts."""
