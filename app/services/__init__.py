"""Use cases. Each public function owns its transaction; resolvers call exactly one."""
