"""The venue interface and the simulated venue, pure (no I/O, no clock of their own)."""
