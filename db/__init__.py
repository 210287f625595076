"""Persistence: SQLAlchemy models, engine and session wiring, shared query helpers."""
