"""Wallets: balances, transfers, history, card and crypto deposits, withdrawals."""
