"""Social trading, copy trading and leaderboard resolvers."""
