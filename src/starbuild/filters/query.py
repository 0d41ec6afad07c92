"""Ordered rules -> one DuckDB query per shard (or group of shards) giving every rule's verdict on every file.

`rules_from_config` builds the `filter.rules` mapping (drop reason -> `_target_` node) in its order,
leaving out rules with `enabled: false`; `RuleSet` computes every feature the rules need once and
asks every rule's predicate. A dropped file's reason is its first failing rule in that order.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from omegaconf import OmegaConf

from starbuild.core.config import locate
from starbuild.filters.rules import BadThreshold, Feature, Rule

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
# The raw table's columns rules may read, besides `content` (read as `text`: NULL is '').
_TABLE_COLUMNS = ("language", "path", "is_generated", "is_vendor", "license_type")
# The columns every feature may read; a feature may not shadow them.
_BASE_COLUMNS = ("row_idx", "text", *_TABLE_COLUMNS)
# Prefix of the verdict columns, so no drop reason can shadow a column or be read as SQL.
_VERDICT = "verdict__"


def sql_literal(value: Any) -> str:
    """`value` (a threshold) as a DuckDB SQL literal: strings quoted, floats exact, lists as VARCHAR[] or BIGINT[].

    Thresholds are written into the SQL rather than bound: DuckDB's parameter binding probes for
    pandas on every parameter of every query, which cost more than the rules themselves.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"CAST('{value!r}' AS DOUBLE)"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return f"CAST([{', '.join(map(sql_literal, value))}] AS VARCHAR[])"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return f"CAST([{', '.join(map(sql_literal, value))}] AS BIGINT[])"
    raise ValueError(f"{value!r} cannot be a threshold (strings, numbers, booleans or lists of strings)")


def _bind(sql: str, params: Mapping[str, Any], owner: str) -> str:
    """`sql` with each `$name` replaced by the literal of params[name]."""

    def literal(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise ValueError(f"{owner} uses ${name}, which is not one of its parameters")
        return sql_literal(params[name])

    return _PARAM.sub(literal, sql)


class RuleSet:
    """Rules in order, keyed by their drop reason."""

    def __init__(self, rules: Mapping[str, Rule]) -> None:
        for reason, rule in rules.items():
            if not _NAME.fullmatch(reason):
                raise ValueError(f"filter.rules.{reason}: a drop reason must be a name of letters, digits and _")
            if not isinstance(rule, Rule):
                raise ValueError(f"filter.rules.{reason} is not a Rule but {type(rule).__name__}")
        self.rules = dict(rules)
        self.features = self._collect_features()

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every drop reason, in rule order."""
        return tuple(self.rules)

    def _collect_features(self) -> tuple[Feature, ...]:
        """Every feature the rules read, each after the features it needs, each name defined once."""
        ordered: dict[str, Feature] = {}

        def add(feature: Feature, reason: str) -> None:
            known = ordered.get(feature.name)
            if known is not None:
                if known != feature:
                    raise ValueError(
                        f"filter.rules.{reason}: feature {feature.name} differs from another rule's feature of that "
                        "name (e.g. different language lists); give both rules the same values"
                    )
                return
            if feature.name in _BASE_COLUMNS or not _NAME.fullmatch(feature.name):
                raise ValueError(f"feature name {feature.name!r} is reserved or not a plain name")
            for need in feature.needs:
                add(need, reason)
            ordered[feature.name] = feature

        for reason, rule in self.rules.items():
            for feature in rule.features():
                add(feature, reason)
        return tuple(ordered.values())

    @property
    def natives(self) -> tuple[Feature, ...]:
        """The features computed in Python, which the query reads as columns of the shard."""
        return tuple(f for f in self.features if f.native is not None)

    def _features_sql(self) -> str:
        """The base columns and every feature, each SQL feature computed once: one nested SELECT per level of
        needs, so a feature reads those of lower levels (one SELECT per feature took longer to plan than to run)."""
        sql = f"SELECT row_idx, {', '.join((*_TABLE_COLUMNS, *(f.name for f in self.natives)))}, " \
              "coalesce(content, '') AS text FROM shard"
        for level in _levels(self.features):
            exprs = ", ".join(f"{_bind(f.sql, f.params, f'feature {f.name}')} AS {f.name}" for f in level)
            sql = f"SELECT *, {exprs} FROM ({sql})"
        return sql

    def query(self) -> str:
        """The SQL giving (row_idx, one boolean per rule: true drops) for the registered table `shard`."""
        sql = self._features_sql()
        verdicts = []
        for reason, rule in self.rules.items():
            predicate = _bind(rule.predicate(), rule.params(), f"rule {reason}")
            verdicts.append(f'coalesce(({predicate}), false) AS "{_VERDICT}{reason}"')
        return f"SELECT {', '.join(['row_idx', *verdicts])} FROM ({sql}) ORDER BY row_idx"

    def verdicts(self, table: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> dict[str, np.ndarray]:
        """Every rule's verdict on every row of `table` (true drops), in row order; on `con`, else this process's."""
        return self.verdicts_of([table], con)[0]

    def verdicts_of(self, tables: Sequence[pa.Table],
                    con: duckdb.DuckDBPyConnection | None = None) -> list[dict[str, np.ndarray]]:
        """`verdicts` of each of `tables`, from one query over all of them (planning it costs a few
        milliseconds, as much as a shard's rows)."""
        result = _run(con or process_connection(), self.query(), tables, self.natives)
        ends = np.cumsum([table.num_rows for table in tables])
        split = {reason: np.split(result.column(f"{_VERDICT}{reason}").to_numpy(zero_copy_only=False).astype(bool),
                                  ends[:-1]) for reason in self.rules}
        return [{reason: split[reason][k] for reason in self.rules} for k in range(len(tables))]

    def drop_reasons(self, table: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> list[str | None]:
        """The drop reason of every row of `table` (its first failing rule; None = keep), in row order."""
        return first_reasons(self.verdicts(table, con), table.num_rows)

    def measure(self, table: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
        """Every feature of every row of `table`, in row order (for inspection and tests)."""
        sql = self._features_sql()
        columns = ", ".join(("row_idx", *(f.name for f in self.features)))
        return _run(con or process_connection(), f"SELECT {columns} FROM ({sql}) ORDER BY row_idx", [table],
                    self.natives)


def _levels(features: Sequence[Feature]) -> list[list[Feature]]:
    """The SQL features (in `features`' order, each after its needs) by level: a level-k feature needs only
    native features and SQL features of levels below k."""
    level_of: dict[str, int] = {}
    levels: list[list[Feature]] = []
    for feature in features:
        if feature.native is not None:
            continue
        level = max((level_of[need.name] + 1 for need in feature.needs if need.name in level_of), default=0)
        level_of[feature.name] = level
        if level == len(levels):
            levels.append([])
        levels[level].append(feature)
    return levels


@dataclasses.dataclass
class _Held:
    """This process's connection and the threads it was last set to."""

    con: duckdb.DuckDBPyConnection
    threads: int | None = None


@functools.lru_cache(maxsize=1)
def _connection_of(pid: int) -> _Held:
    return _Held(duckdb.connect())


def process_connection(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """This process's connection, made on first use: a worker filters many shards, connecting once (~10 ms).

    `threads` caps DuckDB's threads (None: every core), so parallel workers do not oversubscribe the cores.
    """
    # Keyed by the pid, so a forked child never uses its parent's connection.
    held = _connection_of(os.getpid())
    wanted = int(threads or os.cpu_count() or 1)
    if held.threads != wanted:  # only on a change: a SET costs half a millisecond a shard
        held.con.execute(f"SET threads = {wanted}")
        held.threads = wanted
    return held.con


def first_failing(verdicts: Mapping[str, np.ndarray], n_rows: int) -> np.ndarray:
    """Each row's first failing rule, as its index in `verdicts`' order; -1 where none fails."""
    if not verdicts:
        return np.full(n_rows, -1, dtype=np.int64)
    dropped = np.array(list(verdicts.values()), dtype=bool).reshape(len(verdicts), n_rows)
    return np.where(dropped.any(axis=0), dropped.argmax(axis=0), -1)


def first_reasons(verdicts: Mapping[str, np.ndarray], n_rows: int) -> list[str | None]:
    """Each row's first failing rule in `verdicts`' order, None where none fails."""
    reasons = list(verdicts)
    return [reasons[index] if index >= 0 else None for index in first_failing(verdicts, n_rows).tolist()]


def _run(con: duckdb.DuckDBPyConnection, sql: str, tables: Sequence[pa.Table],
         natives: tuple[Feature, ...]) -> pa.Table:
    """Run `sql` on the rows of `tables` one after another, numbered from 0: their `content`, _TABLE_COLUMNS
    and `natives`, registered as `shard`."""
    per_table = []
    for table in tables:
        scanned: dict[Any, Mapping[str, pa.Array]] = {}  # features sharing a scan share its one call
        for feature in natives:
            key = (feature.native.scan, feature.native.reads)
            if key not in scanned:
                scanned[key] = feature.native.scan(*(table.column(name) for name in feature.native.reads))
        per_table.append({"content": table.column("content"), **{name: table.column(name) for name in _TABLE_COLUMNS},
                          **{f.name: scanned[f.native.scan, f.native.reads][f.native.column] for f in natives}})
    rows = sum(table.num_rows for table in tables)
    columns = {"row_idx": pa.array(np.arange(rows, dtype=np.int64)),
               **{name: _concat([own[name] for own in per_table]) for name in per_table[0]}}
    con.register("shard", pa.table(columns))
    try:
        return con.execute(sql).to_arrow_table()
    finally:
        con.unregister("shard")


def _concat(parts: list[pa.Array | pa.ChunkedArray]) -> pa.ChunkedArray:
    """One column from the same column of several tables, without copying."""
    chunks = [chunk for part in parts for chunk in (part.chunks if isinstance(part, pa.ChunkedArray) else [part])]
    return pa.chunked_array(chunks, type=parts[0].type)


def build_rule(reason: str, node: Any, root: Path) -> Rule:
    """Instantiate one `filter.rules.<reason>` node, its data files read under `root`; ValueError names the key."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    key = f"filter.rules.{reason}"
    target = node.get("_target_") if isinstance(node, Mapping) else None
    if not isinstance(target, str):
        raise ValueError(f"{key} needs a `_target_` naming a rule class, e.g. starbuild.filters.rules.MaxLines")
    try:
        cls = locate(target)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{key}._target_: cannot import '{target}' ({type(err).__name__}: {err})") from err
    if not (isinstance(cls, type) and issubclass(cls, Rule)) or getattr(cls, "__abstractmethods__", None):
        raise ValueError(f"{key}._target_: '{target}' is not a rule class (see starbuild.filters.rules)")
    try:
        return instantiate(node, _convert_="all").with_root(root)
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, BadThreshold):
            raise ValueError(f"{key}.{cause}") from err
        # A missing or unknown threshold: Python's TypeError names it ("unexpected keyword argument 'x'").
        message = " ".join(str(cause).split())
        raise ValueError(f"{key}: {message}") from err
    except BadThreshold as err:
        raise ValueError(f"{key}.{err}") from err


# Switches a rule off without removing it: `dvc exp run -S filter.rules.<reason>.enabled=false`.
ENABLED = "enabled"


def _enabled(reason: str, node: Any) -> bool:
    """Whether the rule takes part (`enabled`, true when absent); the key is removed from `node`."""
    enabled = node.pop(ENABLED, True) if isinstance(node, dict) else True
    if not isinstance(enabled, bool):
        raise ValueError(f"filter.rules.{reason}.{ENABLED} must be true or false, got {enabled!r}")
    return enabled


def rules_from_config(section: Any, root: Path | None = None) -> RuleSet:
    """The enabled rules of the `filter.rules` mapping (reason -> `_target_` node), built in order, their data
    files read under `root` (the working directory by default); ValueError names a bad key."""
    rules = OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) else section
    if not isinstance(rules, Mapping):
        raise ValueError("filter.rules must be a mapping from drop reason to {_target_: ..., thresholds}")
    nodes = {str(reason): dict(node) if isinstance(node, Mapping) else node for reason, node in rules.items()}
    return RuleSet({reason: build_rule(reason, node, Path(root or Path.cwd()))
                    for reason, node in nodes.items() if _enabled(reason, node)})
