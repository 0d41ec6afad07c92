"""File-level quality filters (The Stack v2 basic filters) expressed as DuckDB SQL."""
