"""Reading and writing tables as directories of Parquet shards, and running work per shard."""
