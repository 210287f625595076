"""GraphQL types of social trading: leaders, follows, copies, the leaderboard."""
