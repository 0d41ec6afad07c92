"""Render stage metrics as Markdown: one table of counts per stage, origins listed apart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested metrics as (dotted key, scalar) pairs in sorted key order."""
    pairs: list[tuple[str, Any]] = []
    for key in sorted(metrics):
        value = metrics[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            pairs.extend(flatten(value, f"{name}."))
        else:
            pairs.append((name, value))
    return pairs


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _table(pairs: list[tuple[str, Any]]) -> list[str]:
    rows = ["| metric | value |", "| --- | --- |"]
    rows += [f"| {key} | {_format_value(value)} |" for key, value in pairs]
    return rows


def _origins_table(origins: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = ["| origin | files | bytes | files by license type | licenses | directory SWHID |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in sorted(origins):
        o = origins[name]
        by_type = ", ".join(f"{kind} {n:,}" for kind, n in sorted(o["files_by_license_type"].items()))
        licenses = sorted(set(o["declared_licenses"]) | set(o["detected_licenses"]))
        rows.append(
            f"| {name} | {o['files']:,} | {o['bytes']:,} | {by_type or '-'} | "
            f"{', '.join(licenses) or '-'} | `{o['directory_swhid'] or '-'}` |"
        )
    return rows


def _funnel_tables(metrics: dict[str, Any]) -> list[str]:
    """The filter funnel: each rule's drops (every failing rule, and first failing), then each language in and kept."""
    dropped, first, languages = metrics.pop("dropped"), metrics.pop("dropped_first"), metrics.pop("languages", {})
    rows = ["| rule | files failing | bytes failing | files dropped first | bytes dropped first |",
            "| --- | --- | --- | --- | --- |"]
    rows += [f"| {rule} | {dropped[rule]['files']:,} | {dropped[rule]['bytes']:,} | {first[rule]['files']:,} | "
             f"{first[rule]['bytes']:,} |" for rule in first]
    rows += ["", "| language | files in | bytes in | files kept | bytes kept |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| {name} | {c['input_files']:,} | {c['input_bytes']:,} | {c['kept_files']:,} | {c['kept_bytes']:,} |"
             for name, c in languages.items()]
    return rows


def render(metrics_by_stage: Mapping[str, Mapping[str, Any]]) -> str:
    """The whole report: a section per stage with metrics, in the mapping's (the DAG's) order."""
    lines = ["# starbuild report", ""]
    evaluation = metrics_by_stage.get("eval", {})
    if evaluation:
        lines += ["## Headline", ""] + _table(flatten(evaluation)) + [""]
    for stage in metrics_by_stage:
        metrics = dict(metrics_by_stage[stage])
        if not metrics:
            continue
        origins = metrics.pop("origins", None)
        funnel = _funnel_tables(metrics) if "dropped_first" in metrics else []
        lines += [f"## {stage}", ""] + _table(flatten(metrics)) + [""]
        if funnel:
            lines += funnel + [""]
        if origins:
            lines += ["### origins", ""] + _origins_table(origins) + [""]
    return "\n".join(lines)
