"""GraphQL types of trading and its mutation results."""
