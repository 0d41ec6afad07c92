"""File-level quality filters (The Stack v2 basic filters): rule objects run as one DuckDB query per shard."""
