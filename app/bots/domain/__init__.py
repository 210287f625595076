"""The bots' pure runtime: each kind a deterministic state machine (see ``runtime``)."""
