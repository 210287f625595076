"""Thin resolvers: parse input, call one service function, map the result."""
