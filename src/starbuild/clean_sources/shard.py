"""One shard of a non-code source cleaned, after near dedup: malware, then decontamination, then PII redaction.

The same steps as the code's clean stage, through the same functions (clean.malware, clean.decontaminate,
clean.redact), on the `text` column. Rows keep their order; a removed row is counted under its step.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from starbuild.clean.decontaminate import hits_per_row, rows_per_benchmark
from starbuild.clean.malware import remove_malware
from starbuild.clean.redact import per_kind, redact_texts
from starbuild.clean.stage import Cleaners
from starbuild.clean_sources.sources import TEXT, Source, row_ids
from starbuild.core.shards import read_shard, write_shard


def drop_near_duplicates(table: pa.Table, source: Source, removed: list[int]) -> tuple[pa.Table, dict[str, Any]]:
    """`table` without the rows at `removed` (indices in this table), counted (per group value, if any)."""
    gone = set(removed)
    counts: dict[str, Any] = {"near_dup_removed": len(gone)}
    if source.group:
        values = table.column(source.group).to_pylist()
        by_group = Counter(values[index] or "" for index in gone)
        counts[f"near_dup_removed_by_{source.group}"] = dict(sorted(by_group.items()))
    keep = pa.array([index not in gone for index in range(table.num_rows)], pa.bool_())
    return table.filter(keep), counts


def decontaminate(table: pa.Table, cleaners: Cleaners) -> tuple[pa.Table, dict[str, Any]]:
    """`table` without the rows whose text holds a benchmark string; rows removed, and rows per benchmark."""
    assert cleaners.patterns is not None
    hits = hits_per_row(table.column(TEXT).to_pylist(), cleaners.patterns)
    keep = [not found for found in hits]
    counts = {"decontaminated_removed": keep.count(False),
              "decontaminated": rows_per_benchmark(hits, cleaners.patterns)}
    return table.filter(pa.array(keep, pa.bool_())), counts


def redact(table: pa.Table, source: Source, cleaners: Cleaners) -> tuple[pa.Table, dict[str, Any]]:
    """`table` with the PII in `text` replaced and `pii_redactions` added; rows whose detection failed dropped."""
    paths = table.column(source.path).to_pylist() if source.path else [""] * table.num_rows
    done = redact_texts(table.column(TEXT).to_pylist(), row_ids(table, source), paths, cleaners.rules)
    table = table.set_column(table.schema.get_field_index(TEXT), TEXT, pa.array(done.texts, pa.large_string()))
    table = table.append_column("pii_redactions", pa.array(done.redactions, pa.int32()))
    counts = {"pii": per_kind(done.per_kind), "pii_redacted": sum(done.per_kind.values()),
              "rows_with_pii": sum(n > 0 for n in done.redactions), "pii_failed": done.keep.count(False)}
    return table.filter(pa.array(done.keep, pa.bool_())), counts


def clean_rows(table: pa.Table, source: Source, removed: list[int], cleaners: Cleaners) -> tuple[pa.Table, dict]:
    """One shard's rows cleaned in Table 3's order (near dedup, malware, decontamination, PII), and its counts."""
    counts: dict[str, Any] = {"rows_in": table.num_rows, "malware_removed": 0, "malware": {},
                              "decontaminated_removed": 0, "decontaminated": {}}
    table, dropped = drop_near_duplicates(table, source, removed)
    counts.update(dropped)
    if cleaners.scanner is not None:
        table, signatures = remove_malware(table, cleaners.scanner, column=TEXT, ids=source.key)
        counts.update(malware_removed=signatures.total(), malware=dict(sorted(signatures.items())))
    if cleaners.patterns is not None:
        # Matched on the original text: redaction must not hide (or fake) a benchmark string.
        table, found = decontaminate(table, cleaners)
        counts.update(found)
    table, redacted = redact(table, source, cleaners)
    counts.update(redacted)
    # min_count=0: no rows (or only null texts) add 0 bytes, not null.
    size = pc.sum(pc.binary_length(table.column(TEXT)), min_count=0).as_py()
    counts.update(rows_out=table.num_rows, bytes_out=size)
    return table.select(source.out_schema.names).cast(source.out_schema), counts


@dataclass(frozen=True)
class CleanShard:
    """Picklable worker: clean shard `src` (less its near-duplicate rows `removed`) into `dst`; return its counts."""

    source: Source
    cleaners: Cleaners

    def __call__(self, task: tuple[Path, Path, list[int]]) -> dict[str, Any]:
        src, dst, removed = task
        table, counts = clean_rows(read_shard(src), self.source, removed, self.cleaners)
        write_shard(table, dst)
        return counts
