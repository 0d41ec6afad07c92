"""Running work over shards: executors and the read-transform-write skeleton."""
