"""The GraphQL endpoint around the schema: view, context, admission, limits, persisted
documents, caching, WebSocket authority."""
