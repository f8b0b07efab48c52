"""Features of the reference corpus (the resumable, shardable embedding cache)."""
