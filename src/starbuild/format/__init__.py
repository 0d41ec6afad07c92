"""Repository-level training documents (StarCoder2 §5.1) and the train/val split by repository."""
