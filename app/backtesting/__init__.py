"""Backtests: strategies run over stored candles on the simulated venue, their metrics and reports."""  # noqa: E501 (one line, as agreed)
