"""GraphQL of the risk engine: limits, states, the what-if check."""
