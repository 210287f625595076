"""Wallet, deposit and withdrawal resolvers."""
