"""What the report says of the sources beyond files (notebooks, issues, pull requests) and of the mixture.

The page and the card both show these rows, so they are computed once, here, from the stages' metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Metrics = Mapping[str, Mapping[str, Any]]


def source_rows(metrics: Metrics) -> list[tuple[str, int, int]]:
    """(source, items read, documents kept) for each beyond-files source whose stage has metrics."""
    rows = []
    notebooks = metrics.get("notebooks")
    if notebooks:
        for fmt, label in (("jupyter_script", "Jupyter scripts"), ("jupyter_structured", "Jupyter structured")):
            rows.append((label, int(notebooks.get("notebooks", 0)), int(notebooks.get(fmt, {}).get("converted", 0))))
    issues = metrics.get("issues")
    if issues:
        rows.append(("GitHub issues", int(issues.get("conversations", 0)), int(issues.get("issues", 0))))
        pulls = issues.get("pull_requests")
        if pulls:
            rows.append(("pull requests", int(pulls.get("conversations", 0)), int(pulls.get("pull_requests", 0))))
    return rows


# What the clean_sources stage removes, as it names the counts (Table 3's processing of these sources).
CLEANING_REMOVALS = {"near_dup": "near_dup_removed", "malware": "malware_removed",
                     "decontaminated": "decontaminated_removed", "pii_failed": "pii_failed"}
CLEANED_SOURCES = {"notebooks": "notebooks", "issues": "issues", "pull_requests": "pull requests"}


def drop_rows(metrics: Metrics) -> list[tuple[str, int]]:
    """(`source: reason`, items dropped) for every reason that dropped any: the issues' and pull requests' render
    filters, then the cleaning of notebooks, issues and pull requests (near duplicates, malware, benchmarks)."""
    issues = metrics.get("issues", {})
    reasons = {"issues": issues.get("dropped", {}), "pull requests": issues.get("pull_requests", {}).get("dropped", {})}
    rows = [(f"{source}: {reason}", int(n)) for source, counts in reasons.items()
            for reason, n in sorted(counts.items()) if n]
    cleaned = metrics.get("clean_sources", {}).get("sources", {})
    for name, label in CLEANED_SOURCES.items():
        counts = cleaned.get(name, {})
        rows += [(f"{label}: {reason}", int(counts.get(key, 0))) for reason, key in CLEANING_REMOVALS.items()]
    return [(label, n) for label, n in rows if n]


def mixture_rows(metrics: Metrics) -> list[tuple[str, float, int, int, float]]:
    """(source, epochs, train documents, train tokens, share of the train tokens) per mixture source."""
    sources = metrics.get("mixture", {}).get("sources", {})
    return [(name, float(s.get("epochs", 0.0)), int(s.get("train_docs", 0)), int(s.get("train_tokens", 0)),
             float(s.get("share", 0.0))) for name, s in sorted(sources.items())]
