"""Benchmarks: GraphQL against a plain Starlette baseline. Run ``python -m bench``."""
