"""A sample of the files each filter rule drops (`filter.keep_rejects` a rule), to see what a rule catches.

A file fails possibly several rules and is sampled under each. The sample is the files with the
smallest hash of (repo_name, path) among a rule's drops: spread over the corpus, and the same whatever
the sharding or the workers, because each shard keeps its own smallest and the merge keeps the smallest
of those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import xxhash

from starbuild.core import schemas


def _sample_keys(table: pa.Table) -> np.ndarray:
    names = table.column("repo_name").to_pylist()
    paths = table.column("path").to_pylist()
    return np.array([xxhash.xxh64_intdigest(f"{n}\0{p}".encode()) for n, p in zip(names, paths, strict=True)],
                    dtype=np.uint64)


def _smallest(table: pa.Table, reasons: Sequence[str], keep: int) -> pa.Table:
    """Per reason, its `keep` rows of smallest sample key, reasons in order (ties broken by blob_id)."""
    keys = _sample_keys(table)
    reason_col = table.column("reason").to_pylist()
    blob_ids = table.column("blob_id").to_pylist()
    chosen: list[int] = []
    for reason in reasons:
        rows = [i for i, r in enumerate(reason_col) if r == reason]
        chosen.extend(sorted(rows, key=lambda i: (int(keys[i]), blob_ids[i]))[:keep])
    return table.take(pa.array(chosen, pa.int64())).cast(schemas.FILTER_REJECTS)


def shard_rejects(table: pa.Table, verdicts: Mapping[str, np.ndarray], keep: int) -> pa.Table:
    """Up to `keep` of this shard's files per rule that drops them, with the rule's name in `reason`."""
    if keep <= 0 or table.num_rows == 0:
        return schemas.FILTER_REJECTS.empty_table()
    parts = []
    for reason, dropped in verdicts.items():
        rows = table.filter(pa.array(dropped, pa.bool_()))
        parts.append(rows.add_column(0, "reason", pa.array([reason] * rows.num_rows, pa.string())))
    return _smallest(pa.concat_tables(parts).cast(schemas.FILTER_REJECTS), list(verdicts), keep)


def merge_rejects(tables: Sequence[pa.Table], reasons: Sequence[str], keep: int) -> pa.Table:
    """The corpus-wide sample from every shard's: `keep` a reason, in rule order."""
    if keep <= 0 or not tables:
        return schemas.FILTER_REJECTS.empty_table()
    return _smallest(pa.concat_tables(tables), reasons, keep)
