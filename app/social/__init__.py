"""Social trading: leaders, follows, copy trading, profit share, the leaderboard."""
