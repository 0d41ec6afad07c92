"""Jupyter notebooks in The Stack v2's two training formats, Jupyter scripts and Jupyter structured (spec §6.3)."""
