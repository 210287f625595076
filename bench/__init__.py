"""Benchmarks: GraphQL against a plain Starlette baseline (``python -m bench``) and
transfers per second (``python -m bench.transfers``)."""
