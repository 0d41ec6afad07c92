"""What the filter rules did to one shard, in files and bytes: the counts `metrics/filter.json` sums.

A dropped file counts under every rule it fails (`dropped`) and once under its first failing rule in
the configured order (`dropped_first`), in total and per language. The funnel CSV walks the rules in
order: what is left after each, so `dvc plots diff` shows what a rule or threshold change removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from starbuild.core.schemas import UNKNOWN_LANGUAGE

# The header of plots/filter_funnel.csv: one row for the input, then one per rule in order.
FUNNEL_COLUMNS = ("step", "rule", "files", "bytes", "dropped_files", "dropped_bytes")


def _files_and_bytes(mask: np.ndarray, sizes: np.ndarray) -> dict[str, int]:
    return {"files": int(mask.sum()), "bytes": int(sizes[mask].sum())}


def _counts(verdicts: Mapping[str, np.ndarray], first: Sequence[str | None], sizes: np.ndarray) -> dict[str, Any]:
    """In, kept, and dropped per rule (every failing rule, and the first one alone) for one group of rows."""
    kept = np.array([reason is None for reason in first], dtype=bool)
    first_arr = np.array(first, dtype=object)
    return {
        "input_files": len(sizes),
        "input_bytes": int(sizes.sum()),
        "kept_files": int(kept.sum()),
        "kept_bytes": int(sizes[kept].sum()),
        "dropped": {reason: _files_and_bytes(mask, sizes) for reason, mask in verdicts.items()},
        "dropped_first": {reason: _files_and_bytes(first_arr == reason, sizes) for reason in verdicts},
    }


def shard_counts(verdicts: Mapping[str, np.ndarray], first: Sequence[str | None], sizes: Sequence[int],
                 languages: Sequence[str | None]) -> dict[str, Any]:
    """The funnel counts of one shard: totals, and the same per language (null as UNKNOWN_LANGUAGE)."""
    sizes_arr = np.asarray(sizes, dtype=np.int64)
    counts = _counts(verdicts, first, sizes_arr)
    groups: dict[str, list[int]] = {}
    for row, language in enumerate(languages):
        groups.setdefault(language or UNKNOWN_LANGUAGE, []).append(row)
    counts["languages"] = {
        language: _counts({r: m[rows] for r, m in verdicts.items()}, [first[i] for i in rows], sizes_arr[rows])
        for language, rows in sorted(groups.items())
    }
    return counts


def funnel_rows(metrics: Mapping[str, Any], reasons: Sequence[str]) -> list[dict[str, Any]]:
    """The funnel in rule order: files and bytes left after each rule, and what it dropped first."""
    files, size = metrics["input_files"], metrics["input_bytes"]
    rows = [{"step": 0, "rule": "input", "files": files, "bytes": size, "dropped_files": 0, "dropped_bytes": 0}]
    for step, reason in enumerate(reasons, start=1):
        dropped = metrics["dropped_first"][reason]
        files, size = files - dropped["files"], size - dropped["bytes"]
        rows.append({"step": step, "rule": reason, "files": files, "bytes": size,
                     "dropped_files": dropped["files"], "dropped_bytes": dropped["bytes"]})
    return rows
