"""CryptoOrchestrator: settings, process wiring, domain and services."""
