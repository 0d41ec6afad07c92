"""`starbuild why BLOB_ID`: where one file went through the build, for every repository/path holding it.

The walk follows the data stages in DAG order (pull, filter, dedup, clean, format) and reads each
stage's output table with DuckDB, filtered on the blob, so no table is loaded whole. A location
(blob_id, repo_name, path) that is absent from a stage's output was dropped there, and the stage's
own record says why: the filter's rules are rebuilt from params.yaml and asked again (as the filter
stage asks them), dedup's cluster table names the kept duplicate, clean's removal table the
benchmark. A kept file is followed to its repository's document in data/docs and its split.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa

from starbuild.cli import NotFound, UsageError
from starbuild.core import layout, schemas
from starbuild.core.shards import list_shards

PARAMS = "params.yaml"
SWHID_PREFIX = "swh:1:cnt:"
_SHA1 = re.compile(r"[0-9a-f]{40}")
# The stage that writes each table, when dvc.yaml cannot say (a copy without it).
_DEFAULT_PRODUCERS = {layout.RAW: "pull", layout.FILTERED: "filter", layout.DEDUP: "dedup",
                      layout.DEDUP_CLUSTERS: "dedup", layout.CLEAN: "clean", layout.DECONTAMINATED: "clean",
                      layout.DOCS: "format"}
# The raw columns the filter rules read (filters/query.py registers exactly these with `content`).
_RULE_COLUMNS = ("content", "language", "path", "is_generated", "is_vendor", "license_type")
# Statuses that mean the answer is incomplete: the command exits with status 1.
NOT_PULLED, MISSING = "not_pulled", "missing"
# dedup's levels in the order they run: a row dropped at an earlier level never reaches a later one.
_DEDUP_ORDER = ("exact_repo", "exact_blob", "near_dup")
# How each level's drop reads, given the kept member ({other} as repo:path) of the cluster.
_DEDUP_WHAT = {"exact_repo": "repository {repo} is an exact copy (same root directory) of {other_repo}, whose "
                             "{other} is kept",
               "exact_blob": "identical to {other}, which is kept",
               "near_dup": "a near-duplicate (MinHash-LSH) of {other}, which is kept"}


class Location(NamedTuple):
    """One place the blob was pulled from."""

    blob_id: str
    repo_name: str
    path: str

    def __str__(self) -> str:
        return f"{self.repo_name}:{self.path}"


@dataclass
class Step:
    """What one stage did with one location: a status (pulled, kept, dropped, train, val, …) and why."""

    stage: str
    status: str
    message: str
    location: Location | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The step as one JSON object (the location's columns first)."""
        where = self.location._asdict() if self.location else {"blob_id": None, "repo_name": None, "path": None}
        return {**where, "stage": self.stage, "status": self.status, "message": self.message, **self.detail}


class OutputMissing(Exception):
    """A stage output the walk needs has not been built; the message names the command that builds it."""


def parse_blob_ref(text: str) -> tuple[tuple[str, ...], str]:
    """The raw columns to match and the lowercase sha1: an SWHID names a content_id, a bare id either kind."""
    value = text.strip().lower()
    columns: tuple[str, ...] = ("blob_id", "content_id")
    if value.startswith(SWHID_PREFIX):
        value, columns = value[len(SWHID_PREFIX):], ("content_id",)
    if not _SHA1.fullmatch(value):
        raise UsageError(f"'{text}' is not a blob id; give 40 hex digits (a blob_id or content_id) or "
                         f"{SWHID_PREFIX}<40 hex digits>")
    return columns, value


class Tables:
    """Reads of the build's tables under `root` with DuckDB, each filtered in SQL to a few rows."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.con = duckdb.connect()

    def command(self, rel: Path) -> str:
        """The command that builds `rel`: `dvc repro <the stage writing it>`."""
        stage = layout.producer_of(rel, self.root) or _DEFAULT_PRODUCERS.get(rel)
        return f"dvc repro {stage}" if stage else "dvc repro"

    def missing(self, rel: Path) -> OutputMissing:
        """The error for an unbuilt `rel`, naming the command that builds it."""
        return OutputMissing(f"{rel} is missing: run `{self.command(rel)}`")

    def shards(self, rel: Path) -> list[str]:
        """The shard files of table `rel` (data/docs: both splits'); OutputMissing when there are none."""
        directory = self.root / rel
        dirs = [directory / split for split in layout.SPLITS] if rel == layout.DOCS else [directory]
        files = [str(shard) for d in dirs for shard in list_shards(d)]
        if not files:
            raise self.missing(rel)
        return files

    def rows(self, rel: Path, select: str, where: str, params: dict[str, Any] | None = None,
             tail: str = "") -> list[dict[str, Any]]:
        """`SELECT select … WHERE where tail` over every shard of `rel`, as dicts."""
        sql = f"SELECT {select} FROM read_parquet($files, union_by_name=true) WHERE {where} {tail}"
        try:
            cursor = self.con.execute(sql, {"files": self.shards(rel), **(params or {})})
        except duckdb.Error as err:  # a truncated shard, a column an old build lacks
            detail = str(err).strip().splitlines()[0]
            raise OutputMissing(f"{rel} is not readable ({detail}): rebuild it with `{self.command(rel)}`") from err
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def of_blobs(self, rel: Path, select: str, locations: Iterable[Location], tail: str = "") -> list[dict[str, Any]]:
        """The rows of `rel` whose blob_id is one of `locations`' (a constant IN list, so Parquet statistics skip
        row groups)."""
        blobs = sorted({loc.blob_id for loc in locations})
        params = {f"b{i}": blob for i, blob in enumerate(blobs)}
        where = f"blob_id IN ({', '.join(f'${name}' for name in params)})"
        return self.rows(rel, select, where, params, tail)

    def present(self, rel: Path, locations: Sequence[Location]) -> set[Location]:
        """Which of `locations` table `rel` holds."""
        found = {Location(r["blob_id"], r["repo_name"], r["path"])
                 for r in self.of_blobs(rel, "blob_id, repo_name, path", locations)}
        return found & set(locations)


def _at(row: dict[str, Any]) -> Location:
    return Location(row["blob_id"], row["repo_name"], row["path"])


def load_params(root: Path) -> Any:
    """The composed config every stage runs with (params.yaml), or OutputMissing naming how to write it."""
    from omegaconf import OmegaConf

    path = root / PARAMS
    if not path.is_file():
        raise OutputMissing(f"{PARAMS} is missing at {root}: run `make params`")
    return OmegaConf.load(path)


# --- pull ---------------------------------------------------------------------------------------------


def _pulled(row: dict[str, Any]) -> Step:
    size = row["length_bytes"]
    what = f"{row['language'] or schemas.UNKNOWN_LANGUAGE}, {row['license_type']}, " \
           f"{size:,} bytes" if size is not None else "no content"
    return Step("pull", "pulled", f"pulled: {what}", _at(row),
                {"content_id": row["content_id"], "language": row["language"], "license_type": row["license_type"],
                 "length_bytes": size})


def _never_pulled(root: Path, value: str) -> Step:
    """The answer for a blob absent from data/raw, with the pull's skip counts as hints."""
    message = f"{value} is not in {layout.RAW}: never pulled (check the id: sha1 of the bytes, or the git blob id)"
    detail: dict[str, Any] = {}
    metrics = root / layout.metrics_file("pull")
    if metrics.is_file():
        pull = json.loads(metrics.read_text(encoding="utf-8"))
        skipped = {reason: n for reason, n in pull.get("skipped", {}).items() if n}
        detail = {"skipped": skipped, "opted_out": pull.get("opted_out", [])}
        counts = ", ".join(f"{reason} {n:,}" for reason, n in sorted(skipped.items())) or "none"
        message += f"; the pull skipped files as (metrics/pull.json `skipped`): {counts}"
        if detail["opted_out"]:
            message += f"; opted-out repositories: {', '.join(map(str, detail['opted_out']))}"
    return Step("pull", NOT_PULLED, message, None, {"blob_id": value, **detail})


# --- filter -------------------------------------------------------------------------------------------


def _small(value: Any) -> bool:
    """Whether a feature or threshold value is short enough to show as evidence."""
    if isinstance(value, list | tuple):
        return len(value) <= 5 and all(_small(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def _evidence(rule: Any, features: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """What a failing rule read (its features and table columns) and its thresholds."""
    predicate = rule.predicate()
    values = {f.name: features[f.name] for f in rule.features() if _small(features.get(f.name))}
    values.update({c: row[c] for c in _RULE_COLUMNS[1:] if re.search(rf"\b{c}\b", predicate)})
    thresholds = {k: list(v) if isinstance(v, tuple) else v for k, v in rule.params().items() if _small(v)}
    return {"values": values, "thresholds": thresholds}


def _filter_drops(tables: Tables, dropped: list[Location]) -> dict[Location, Step]:
    """Why the filter dropped each location: the rule set rebuilt as the filter stage builds it, asked again."""
    from starbuild.filters.query import rules_from_config

    cfg = load_params(tables.root)
    try:
        rules = rules_from_config(cfg.filter.get("rules"), tables.root)
    except (ValueError, TypeError) as err:
        raise OutputMissing(f"the filter rules in {PARAMS} do not build ({err}); fix conf/filter/ and run "
                            "`make params`") from err
    wanted = set(dropped)
    rows = [r for r in tables.of_blobs(layout.RAW, ", ".join(("blob_id", "repo_name", *_RULE_COLUMNS)), dropped)
            if _at(r) in wanted]
    schema = pa.schema([schemas.RAW.field(name) for name in _RULE_COLUMNS])
    table = pa.Table.from_pylist(rows, schema=schema)
    verdicts = rules.verdicts(table)
    features = rules.measure(table).to_pylist()
    steps = {}
    for index, row in enumerate(rows):
        failing = [reason for reason in rules.reasons if verdicts[reason][index]]
        if not failing:
            steps[_at(row)] = Step("filter", "dropped", f"not in {layout.FILTERED}, yet no rule of {PARAMS} drops "
                                   "it now: the filter output is stale; run `dvc repro filter`", _at(row),
                                   {"rule": None, "failing_rules": []})
            continue
        evidence = {reason: _evidence(rules.rules[reason], features[index], row) for reason in failing}
        also = f" (also fails: {', '.join(failing[1:])})" if failing[1:] else ""
        steps[_at(row)] = Step("filter", "dropped", f"dropped by rule {failing[0]}{also}: "
                               f"{_describe(evidence[failing[0]])}", _at(row),
                               {"rule": failing[0], "failing_rules": failing, "evidence": evidence})
    return steps


def _describe(evidence: dict[str, Any]) -> str:
    """`name=value, …` of a rule's evidence, long strings cut."""
    def show(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)
        return text if len(text) <= 60 else text[:57] + "..."

    values = ", ".join(f"{k}={show(v)}" for k, v in evidence["values"].items())
    thresholds = ", ".join(f"{k}={show(v)}" for k, v in evidence["thresholds"].items())
    return f"{values or 'no values'} (thresholds: {thresholds or 'none'})"


def _filter(tables: Tables, alive: list[Location]) -> dict[Location, Step]:
    kept = tables.present(layout.FILTERED, alive)
    steps = {loc: Step("filter", "kept", "kept: no filter rule drops it", loc) for loc in kept}
    dropped = [loc for loc in alive if loc not in kept]
    return {**steps, **(_filter_drops(tables, dropped) if dropped else {})}


# --- dedup --------------------------------------------------------------------------------------------


def _dedup_drop(tables: Tables, loc: Location, members: list[dict[str, Any]]) -> Step:
    """Why dedup dropped `loc`: its cluster row with kept=false, and the kept member it duplicates."""
    mine = sorted((m for m in members if _at(m) == loc and not m["kept"]),
                  key=lambda m: _DEDUP_ORDER.index(m["reason"]) if m["reason"] in _DEDUP_ORDER else 99)
    if not mine:
        return Step("dedup", "dropped", f"not in {layout.DEDUP} nor in {layout.DEDUP_CLUSTERS}: the dedup output is "
                    "stale; run `dvc repro dedup`", loc, {"reason": None})
    row = mine[0]
    kept = tables.rows(layout.DEDUP_CLUSTERS, "blob_id, repo_name, path", "cluster_id = $c AND kept",
                       {"c": row["cluster_id"]}, "ORDER BY repo_name, path")
    # An exact repository copy keeps the same path in the surviving repository.
    same_path = [k for k in kept if k["path"] == loc.path]
    survivor = (same_path or kept or [None])[0]
    other = f"{survivor['repo_name']}:{survivor['path']}" if survivor else "a file not recorded (stale output?)"
    what = _DEDUP_WHAT.get(row["reason"], "a duplicate of {other}").format(
        repo=loc.repo_name, other=other, other_repo=survivor["repo_name"] if survivor else "?")
    return Step("dedup", "dropped", f"dropped as {row['reason']}: {what} (cluster {row['cluster_id']}, "
                f"{row['cluster_size']} members)", loc,
                {"reason": row["reason"], "cluster_id": row["cluster_id"], "cluster_size": row["cluster_size"],
                 "kept": survivor})


def _dedup(tables: Tables, alive: list[Location]) -> dict[Location, Step]:
    kept = tables.present(layout.DEDUP, alive)
    steps = {loc: Step("dedup", "kept", "kept: the copy dedup keeps", loc) for loc in kept}
    dropped = [loc for loc in alive if loc not in kept]
    if dropped:
        members = tables.of_blobs(layout.DEDUP_CLUSTERS, "*", dropped)
        steps.update({loc: _dedup_drop(tables, loc, members) for loc in dropped})
    return steps


# --- clean --------------------------------------------------------------------------------------------


def _clean_recheck(tables: Tables, loc: Location) -> tuple[str, dict[str, Any]]:
    """Why clean removed a file not listed as contamination: rescan for malware, redo PII detection."""
    from starbuild.clean.malware import MalwareScanError, scanner_from
    from starbuild.clean.pii import CleanConfig
    from starbuild.clean.redact import INPUT_ERRORS, redact_text, rules_from
    from starbuild.core.config import ConfigError, typed_section

    try:
        cfg = typed_section(load_params(tables.root), "clean", CleanConfig)
    except ConfigError as err:
        raise OutputMissing(f"{err} (in {PARAMS})") from err
    rows = [r for r in tables.of_blobs(layout.DEDUP, "blob_id, repo_name, path, content", [loc]) if _at(r) == loc]
    content = rows[0]["content"] if rows else None
    if cfg.malware.database is not None and content:
        try:
            found = scanner_from(cfg.malware, tables.root).scan([content])
        except (ValueError, MalwareScanError) as err:
            return (f"removed by the clean stage, not as contamination: probably malware (clean.malware.database is "
                    f"set) but it cannot be rescanned here ({err})", {"reason": "malware"})
        if found:
            return f"removed as malware: matches ClamAV signature {found[0]}", {"reason": "malware",
                                                                               "signature": found[0]}
    try:
        redact_text(content or "", rules_from(cfg, tables.root), loc.blob_id, loc.path)
    except INPUT_ERRORS as err:
        return (f"removed: PII detection failed ({type(err).__name__}: {err}), so it was dropped rather than kept "
                "unredacted", {"reason": "pii_failed"})
    return (f"not in {layout.CLEAN}, yet neither contamination, malware nor a PII failure explains it now: the clean "
            "output is stale; run `dvc repro clean`", {"reason": None})


def _clean(tables: Tables, alive: list[Location]) -> dict[Location, Step]:
    kept = {_at(r): r for r in tables.of_blobs(layout.CLEAN, "blob_id, repo_name, path, pii_redactions", alive)}
    steps = {}
    for loc in alive:
        if loc in kept:
            n = kept[loc]["pii_redactions"]
            steps[loc] = Step("clean", "kept", f"kept; {n} PII span{'s' if n != 1 else ''} redacted", loc,
                              {"pii_redactions": n})
    dropped = [loc for loc in alive if loc not in kept]
    if not dropped:
        return steps
    hits: dict[Location, list[dict[str, Any]]] = {}
    for row in tables.of_blobs(layout.DECONTAMINATED, "*", dropped, tail="ORDER BY benchmark, task_id"):
        hits.setdefault(_at(row), []).append({"benchmark": row["benchmark"], "task_id": row["task_id"]})
    for loc in dropped:
        if loc in hits:
            tasks = ", ".join(f"{h['benchmark']} {h['task_id']}" for h in hits[loc][:3])
            more = f" and {len(hits[loc]) - 3} more" if len(hits[loc]) > 3 else ""
            steps[loc] = Step("clean", "dropped", f"removed as benchmark contamination: contains {tasks}{more}", loc,
                              {"reason": "decontamination", "benchmarks": hits[loc]})
        else:
            message, detail = _clean_recheck(tables, loc)
            steps[loc] = Step("clean", "dropped", message, loc, detail)
    return steps


# --- format -------------------------------------------------------------------------------------------


def _format(tables: Tables, alive: list[Location]) -> dict[Location, Step]:
    repos = sorted({loc.repo_name for loc in alive})
    params = {f"r{i}": repo for i, repo in enumerate(repos)}
    # Code documents only (other sources' have a language; schemas.DOCS), each counted once, with its copies.
    where = f"repo_name IN ({', '.join(f'${name}' for name in params)}) AND language IS NULL"
    columns = "repo_name, split, count(*) FILTER (WHERE epoch = 0) AS docs, max(epoch) + 1 AS copies"
    found = tables.rows(layout.DOCS, columns, where, params, "GROUP BY repo_name, split ORDER BY repo_name, split")
    splits = {(r["repo_name"]): r for r in found}
    steps = {}
    for loc in alive:
        doc = splits.get(loc.repo_name)
        if doc is None:
            steps[loc] = Step("format", MISSING, f"its repository is not in {layout.DOCS}: run `dvc repro format`",
                              loc)
            continue
        plural = "s" if doc["docs"] != 1 else ""
        repeated = f", in the stream {doc['copies']} times (mixture epochs)" if doc["copies"] > 1 else ""
        steps[loc] = Step("format", doc["split"], f"in the {doc['split']} split: repository {loc.repo_name} is "
                          f"{doc['docs']} document{plural} of {layout.DOCS}/{doc['split']}{repeated}", loc,
                          {"split": doc["split"], "documents": doc["docs"], "copies": doc["copies"]})
    return steps


# The stages after the pull in DAG order: each decides every location still alive.
WALK: tuple[tuple[str, Callable[[Tables, list[Location]], dict[Location, Step]]], ...] = (
    ("filter", _filter), ("dedup", _dedup), ("clean", _clean), ("format", _format))


def explain(root: Path, blob_ref: str) -> list[Step]:
    """Every step of every location of the blob, grouped by location in (repo_name, path) order."""
    columns, value = parse_blob_ref(blob_ref)
    tables = Tables(root)
    where = " OR ".join(f"{column} = $id" for column in columns)
    try:
        raw = tables.rows(layout.RAW, "blob_id, content_id, repo_name, path, language, license_type, length_bytes",
                          where, {"id": value}, "ORDER BY repo_name, path")
    except OutputMissing as err:
        raise NotFound(str(err)) from err
    if not raw:
        return [_never_pulled(root, value)]
    steps = {_at(row): [_pulled(row)] for row in raw}
    alive = list(steps)
    for stage, decide in WALK:
        try:
            decided = decide(tables, alive)
        except OutputMissing as err:
            for loc in alive:
                steps[loc].append(Step(stage, MISSING, str(err), loc))
            break
        for loc in alive:
            steps[loc].append(decided[loc])
        alive = [loc for loc in alive if decided[loc].status == "kept"]
        if not alive:
            break
    return [step for loc in steps for step in steps[loc]]


def exit_status(steps: Sequence[Step]) -> int:
    """1 when the blob was never pulled or a stage output is missing, else 0."""
    return 1 if any(step.status in (NOT_PULLED, MISSING) for step in steps) else 0


def render(steps: Sequence[Step]) -> str:
    """One line per stage, under a heading per location."""
    width = max(len(step.stage) for step in steps)
    lines: list[str] = []
    last: Location | None = None
    for step in steps:
        if step.location is None:
            lines.append(f"blob {step.detail.get('blob_id')}")
        elif step.location != last:
            lines.append(f"{step.location}  (blob {step.location.blob_id})")
            last = step.location
        lines.append(f"  {step.stage:<{width}}  {step.message}")
    return "\n".join(lines) + "\n"
