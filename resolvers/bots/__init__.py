"""The bots' queries, mutations, subscription and DataLoaders."""
