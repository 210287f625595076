"""The bots' GraphQL types: the Bot node, inputs, pre-flight, results, updates."""
