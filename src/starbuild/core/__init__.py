"""The shared core every stage runs: the Hydra stage app, paths, schemas, config and shard IO."""
