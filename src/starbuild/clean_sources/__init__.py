"""The clean_sources stage: notebooks, issues and pull requests near-deduplicated, malware-scanned,
decontaminated and PII-redacted, as The Stack v2 processed its non-code sources (spec §1.8, Table 3)."""
