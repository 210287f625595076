"""The process's foundations: errors, money, settings, logs, metrics, waits."""
