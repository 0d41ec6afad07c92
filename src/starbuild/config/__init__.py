"""Composing conf/ into params.yaml and reading it back in stages."""
