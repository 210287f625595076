"""Plain HTTP around the GraphQL endpoint: ops routes, middleware, webhooks, email-link pages."""
