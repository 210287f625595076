"""Staking: products, stakes, the daily accrual, the shipped catalogue."""
