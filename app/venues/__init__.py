"""Venues: where orders go (the live internal venue, the simulated venue; exchanges later)."""
