"""Running work over shards: the read-transform-write-count skeleton (executors live in starbuild.executors)."""
