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


def _per_reason(files: np.ndarray, size: np.ndarray, reasons: Sequence[str]) -> dict[str, dict[str, int]]:
    return {reason: {"files": int(files[k]), "bytes": int(size[k])} for k, reason in enumerate(reasons)}


def shard_counts(verdicts: Mapping[str, np.ndarray], first: Sequence[str | None], sizes: Sequence[int],
                 languages: Sequence[str | None]) -> dict[str, Any]:
    """The funnel counts of one shard: totals, and the same per language (null as UNKNOWN_LANGUAGE)."""
    reasons = list(verdicts)
    sizes_arr = np.asarray(sizes, dtype=np.int64)
    first_arr = np.array(first, dtype=object)
    # Rows: the input, the kept, then each reason's drops, then each reason's first drops; columns: the shard's rows.
    dropped = np.array([verdicts[reason] for reason in reasons], dtype=bool).reshape(len(reasons), len(sizes_arr))
    firsts = np.array([first_arr == reason for reason in reasons], dtype=bool).reshape(dropped.shape)
    masks = np.vstack([np.ones((1, len(sizes_arr)), bool), ~firsts.any(axis=0, keepdims=True), dropped, firsts])
    names, group = np.unique(np.array([language or UNKNOWN_LANGUAGE for language in languages], dtype=object),
                             return_inverse=True)
    # Column 0: the whole shard; column 1 + g: language g. One product counts every group's files and bytes.
    groups = np.zeros((len(sizes_arr), 1 + len(names)), dtype=np.int64)
    groups[:, 0] = 1
    groups[np.arange(len(sizes_arr)), 1 + group.reshape(-1)] = 1
    files = masks.astype(np.int64) @ groups
    size = (masks * sizes_arr) @ groups
    n = len(reasons)

    def counts(column: int) -> dict[str, Any]:
        return {
            "input_files": int(files[0, column]),
            "input_bytes": int(size[0, column]),
            "kept_files": int(files[1, column]),
            "kept_bytes": int(size[1, column]),
            "dropped": _per_reason(files[2:2 + n, column], size[2:2 + n, column], reasons),
            "dropped_first": _per_reason(files[2 + n:, column], size[2 + n:, column], reasons),
        }

    return {**counts(0), "languages": {str(name): counts(1 + g) for g, name in enumerate(names)}}


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
