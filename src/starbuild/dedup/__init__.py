"""Deduplication: exact file-level dedup on blob_id (The Stack v2 §3.1)."""
