"""What the filter rules did to one shard, in files and bytes: the counts `metrics/filter.json` sums.

A dropped file counts under every rule it fails (`dropped`) and once under its first failing rule in
the configured order (`dropped_first`), in total and per language. The funnel CSV walks the rules in
order: what is left after each, so `dvc plots diff` shows what a rule or threshold change removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from starbuild.core.schemas import UNKNOWN_LANGUAGE

# The header of plots/filter_funnel.csv: one row for the input, then one per rule in order.
FUNNEL_COLUMNS = ("step", "rule", "files", "bytes", "dropped_files", "dropped_bytes")


@dataclass(frozen=True)
class ShardFunnel:
    """One shard's funnel per language: files and bytes (`size`), `funnel_row_count` rows by one column per
    language of `languages`; small to send back from a worker and to add up."""

    languages: tuple[str, ...]
    files: np.ndarray
    size: np.ndarray


def funnel_row_count(reasons: int) -> int:
    """The rows of a ShardFunnel: the input, the kept, each reason's drops, then each reason's first drops."""
    return 2 + 2 * reasons


def shard_funnel(verdicts: Mapping[str, np.ndarray], first: np.ndarray, sizes: pa.ChunkedArray,
                 languages: pa.ChunkedArray) -> ShardFunnel:
    """The funnel of one shard from its verdicts and `first` (each row's first failing rule, -1 for none)."""
    n = len(first)
    dropped = np.array([verdicts[reason] for reason in verdicts], dtype=bool).reshape(len(verdicts), n)
    firsts = first[None, :] == np.arange(len(verdicts))[:, None]
    masks = np.vstack([np.ones((1, n), bool), (first < 0)[None, :], dropped, firsts])
    encoded = pc.fill_null(languages, UNKNOWN_LANGUAGE).combine_chunks().dictionary_encode()
    groups = np.zeros((n, len(encoded.dictionary)), dtype=np.int64)
    groups[np.arange(n), encoded.indices.to_numpy(zero_copy_only=False)] = 1
    weights = sizes.to_numpy().astype(np.int64)
    # One product counts every language's files, one its bytes.
    return ShardFunnel(tuple(encoded.dictionary.to_pylist()), masks.astype(np.int64) @ groups,
                       (masks * weights) @ groups)


def funnel_metrics(shards: Iterable[ShardFunnel], reasons: Sequence[str]) -> dict[str, Any]:
    """The counts of metrics/filter.json: the shards' funnels added up, in total and per language (every
    reason named, with or without drops)."""
    rows = funnel_row_count(len(reasons))
    by_language: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for shard in shards:
        for column, language in enumerate(shard.languages):
            files, size = by_language.get(language, (np.zeros(rows, np.int64), np.zeros(rows, np.int64)))
            by_language[language] = files + shard.files[:, column], size + shard.size[:, column]
    total_files = sum((files for files, _ in by_language.values()), np.zeros(rows, np.int64))
    total_size = sum((size for _, size in by_language.values()), np.zeros(rows, np.int64))

    def counts(files: np.ndarray, size: np.ndarray) -> dict[str, Any]:
        n = len(reasons)
        return {
            "input_files": int(files[0]),
            "input_bytes": int(size[0]),
            "kept_files": int(files[1]),
            "kept_bytes": int(size[1]),
            "dropped": {reason: {"files": int(files[2 + k]), "bytes": int(size[2 + k])}
                        for k, reason in enumerate(reasons)},
            "dropped_first": {reason: {"files": int(files[2 + n + k]), "bytes": int(size[2 + n + k])}
                              for k, reason in enumerate(reasons)},
        }

    return {**counts(total_files, total_size),
            "languages": {language: counts(*both) for language, both in by_language.items()}}


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
