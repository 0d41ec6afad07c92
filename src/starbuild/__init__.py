"""starbuild: The Stack v2 / StarCoder2 pipeline as a reproducible DVC + Hydra build."""

__version__ = "0.1.0"
