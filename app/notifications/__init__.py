"""Notifications and price alerts."""
