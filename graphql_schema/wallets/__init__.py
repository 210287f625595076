"""GraphQL types of wallets: currencies, wallets, transfers, deposits, withdrawals."""
