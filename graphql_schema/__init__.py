"""GraphQL types, inputs, errors and schema assembly (strawberry)."""
