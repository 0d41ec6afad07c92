"""GitHub issues from GHArchive events, filtered and rendered as StarCoder2 did (spec §4.2, §6.3)."""
