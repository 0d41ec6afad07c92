"""`reports/dataset_card.md`: the built dataset described as The Stack v2's card describes it.

Sources with their SWHIDs, the license and language mix, every filter with its thresholds and what it
removed, the dedup parameters, PII and decontamination counts, the notebooks, issues and pull requests,
the training mixture, and how to rebuild it. Only metrics and
params go in (no commit, no machine), so the card is a DVC out that rebuilds byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starbuild.report.charts import number
from starbuild.report.sources import drop_rows, mixture_rows, source_rows

# Thresholds are shown up to this many characters (pattern lists and phrase lists can be long).
_MAX_VALUE_CHARS = 120


def render_card(metrics: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]) -> str:
    """The dataset card (Markdown with the Hugging Face card's YAML header)."""
    pull, filt, dedup, clean = (metrics.get(k, {}) for k in ("pull", "filter", "dedup", "clean"))
    languages = clean.get("languages", {})
    lines = ["---", "license: other", "task_categories: [text-generation]", "tags: [code, the-stack-v2, starbuild]",
             f"language_details: {len(languages)} programming and markup languages", "---", "",
             "# Dataset card", "",
             "Source code files from Software Heritage origins, selected, filtered, deduplicated and cleaned as "
             "The Stack v2 was, built by starbuild's DVC pipeline from the params below.", "",
             "## Summary", "",
             *_rows(("files pulled", pull.get("files")), ("bytes pulled", pull.get("bytes")),
                    ("files after the filters", filt.get("kept_files")),
                    ("files after deduplication", dedup.get("kept_files")),
                    ("files in the dataset", clean.get("files")), ("languages", len(languages)),
                    ("origins", len(pull.get("origins", {})))), "",
             "## Sources", "", *_sources(pull.get("origins", {}), params.get("source", {})), "",
             "## Licenses", "",
             "Each file's license comes from the license files of its directory and those above it (detected "
             "offline), or the origin's declared license; `permissive` and `no_license` files are kept by default.",
             "", *_mix(pull.get("files_by_license_type", {}), clean.get("license_types", {}), "license type"), "",
             "## Languages", "", *_mix(pull.get("languages", {}), languages, "language"), "",
             "## Filters", "", *_filters(params.get("filter", {}).get("rules", {}), filt), "",
             "## Deduplication", "", *_dedup(params.get("dedup", {}), dedup), "",
             "## Personal information and decontamination", "", *_cleaning(clean), "",
             "## Beyond files", "", *_beyond_files(metrics), "",
             "## Training mixture", "", *_mixture(metrics), "",
             "## Rebuilding", "",
             "On a checkout of the commit that holds this card's `dvc.lock`: `make repro` (it creates the "
             "environment, composes params.yaml and runs `dvc repro`); every artifact comes out with the md5 in "
             "`dvc.lock`. `dvc pull` fetches released artifacts instead of rebuilding them.", ""]
    return "\n".join(lines)


def _rows(*pairs: tuple[str, Any]) -> list[str]:
    return ["| | |", "| --- | ---: |", *(f"| {k} | {number(v) if v is not None else '–'} |" for k, v in pairs)]


def _sources(origins: Mapping[str, Mapping[str, Any]], source: Mapping[str, Any]) -> list[str]:
    rows = [f"Source kind `{source.get('kind', '?')}`; {len(origins)} origins.", "",
            "| origin | directory SWHID | snapshot SWHID | files | licenses |", "| --- | --- | --- | ---: | --- |"]
    for name in sorted(origins):
        o = origins[name]
        licenses = sorted(set(o.get("declared_licenses", [])) | set(o.get("detected_licenses", [])))
        rows.append(f"| {name} | `{o.get('directory_swhid') or '–'}` | `{o.get('snapshot_swhid') or '–'}` | "
                    f"{number(o.get('files', 0))} | {', '.join(licenses) or '–'} |")
    return rows


def _mix(before: Mapping[str, Any], after: Mapping[str, Any], key: str) -> list[str]:
    rows = [f"| {key} | files pulled | files in the dataset | bytes in the dataset |", "| --- | ---: | ---: | ---: |"]
    for name in sorted(set(before) | set(after), key=lambda k: (-int(before.get(k, 0)), k)):
        final = after.get(name, {})
        rows.append(f"| {name} | {number(int(before.get(name, 0)))} | {number(final.get('files', 0))} | "
                    f"{number(final.get('bytes', 0))} |")
    return rows


def _filters(rules: Mapping[str, Any], filt: Mapping[str, Any]) -> list[str]:
    first = filt.get("dropped_first", {})
    rows = ["In order; a file is counted under the first rule it fails.", "",
            "| rule | check | thresholds | files removed | bytes removed |", "| --- | --- | --- | ---: | ---: |"]
    for reason, node in rules.items():
        node = dict(node)
        enabled = node.pop("enabled", True)
        check = str(node.pop("_target_", "?")).rsplit(".", 1)[-1]
        thresholds = "; ".join(f"{k}={_short(v)}" for k, v in node.items())
        removed = first.get(reason, {})
        rows.append(f"| {reason} | {check}{'' if enabled else ' (off)'} | {thresholds or '–'} | "
                    f"{number(removed.get('files', 0))} | {number(removed.get('bytes', 0))} |")
    return rows


def _dedup(params: Mapping[str, Any], dedup: Mapping[str, Any]) -> list[str]:
    settings = ", ".join(f"`{k}={_short(v)}`" for k, v in params.items())
    rows = [f"Exact by repository and by file, then MinHash LSH: {settings or 'defaults'}.", "",
            "| reason | clusters | files removed |", "| --- | ---: | ---: |"]
    rows += [f"| {r} | {number(n)} | {number(dedup.get('dropped', {}).get(r, 0))} |"
             for r, n in dedup.get("clusters", {}).items()]
    return rows


def _cleaning(clean: Mapping[str, Any]) -> list[str]:
    pii = clean.get("pii", {})
    rows = ["| PII type | redactions |", "| --- | ---: |", *(f"| {k} | {number(v)} |" for k, v in sorted(pii.items()))]
    rows += ["", "| benchmark | files removed |", "| --- | ---: |"]
    rows += [f"| {k} | {number(v)} |" for k, v in sorted(clean.get("decontaminated", {}).items())]
    return rows


def _beyond_files(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = ["Jupyter notebooks from the pulled files, GitHub issues and pull requests from GHArchive events, "
            "rendered in StarCoder2's formats, then near-deduplicated, decontaminated and PII-redacted (and "
            "malware-scanned when a database is set) as The Stack v2's Table 3 says.", "",
            "| source | read | documents kept |", "| --- | ---: | ---: |"]
    rows += [f"| {name} | {number(read)} | {number(kept)} |" for name, read, kept in source_rows(metrics)]
    rows += ["", "| dropped | items |", "| --- | ---: |"]
    return rows + [f"| {reason} | {number(n)} |" for reason, n in drop_rows(metrics)]


def _mixture(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = ["| source | epochs | train documents | train tokens | share |", "| --- | ---: | ---: | ---: | ---: |"]
    return rows + [f"| {name} | {epochs:g} | {number(docs)} | {number(tokens)} | {share:.2%} |"
                   for name, epochs, docs, tokens, share in mixture_rows(metrics)]


def _short(value: Any) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, Sequence) and not isinstance(value, str) else str(value)
    # A pattern's `|` would end the Markdown table cell, a newline the row.
    text = text.replace("|", "\\|").replace("\n", "\\n")
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS - 1] + "…"
