"""Ordered rules -> one DuckDB query per shard: the first failing rule names the drop reason.

`rules_from_config` builds the `filter.rules` mapping (drop reason -> `_target_` node) in its order;
`RuleSet` computes every feature the rules need once and asks each rule's predicate in turn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import duckdb
import pyarrow as pa
from omegaconf import OmegaConf

from starbuild.core.config import locate
from starbuild.filters.rules import BadThreshold, Feature, Rule

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
# The columns every feature may read; a feature may not shadow them.
_BASE_COLUMNS = ("row_idx", "language", "text")
_BASE_SQL = "SELECT row_idx, language, coalesce(content, '') AS text FROM shard"


def _bind(sql: str, params: Mapping[str, Any], prefix: str, owner: str) -> tuple[str, dict[str, Any]]:
    """Rename `$name` in `sql` to `$<prefix>__name`, so rules and features never share a parameter."""
    used: dict[str, Any] = {}

    def rename(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise ValueError(f"{owner} uses ${name}, which is not one of its parameters")
        value = params[name]
        # DuckDB binds a Python tuple as a STRUCT; language lists must be LISTs.
        used[f"{prefix}__{name}"] = list(value) if isinstance(value, tuple) else value
        return f"${prefix}__{name}"

    return _PARAM.sub(rename, sql), used


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

    def _features_sql(self) -> tuple[str, dict[str, Any]]:
        """One nested SELECT per feature, so each is computed once and later ones can read it."""
        sql, params = _BASE_SQL, {}
        for feature in self.features:
            expr, used = _bind(feature.sql, feature.params, f"feature_{feature.name}", f"feature {feature.name}")
            sql = f"SELECT *, {expr} AS {feature.name} FROM ({sql})"
            params.update(used)
        return sql, params

    def query(self) -> tuple[str, dict[str, Any]]:
        """The SQL giving (row_idx, reason) for the registered table `shard`, and its parameters."""
        sql, params = self._features_sql()
        cases = []
        for reason, rule in self.rules.items():
            predicate, used = _bind(rule.predicate(), rule.params(), f"rule_{reason}", f"rule {reason}")
            cases.append(f"WHEN ({predicate}) THEN '{reason}'")
            params.update(used)
        reason_sql = f"CASE {' '.join(cases)} END" if cases else "CAST(NULL AS VARCHAR)"
        return f"SELECT row_idx, {reason_sql} AS reason FROM ({sql}) ORDER BY row_idx", params

    def drop_reasons(self, con: duckdb.DuckDBPyConnection, table: pa.Table) -> list[str | None]:
        """The drop reason of every row of `table` (None = keep), in row order."""
        sql, params = self.query()
        return _run(con, sql, table, params).column("reason").to_pylist()

    def measure(self, con: duckdb.DuckDBPyConnection, table: pa.Table) -> pa.Table:
        """Every feature of every row of `table`, in row order (for inspection and tests)."""
        sql, params = self._features_sql()
        columns = ", ".join(("row_idx", *(f.name for f in self.features)))
        return _run(con, f"SELECT {columns} FROM ({sql}) ORDER BY row_idx", table, params)


def _run(con: duckdb.DuckDBPyConnection, sql: str, table: pa.Table, params: dict[str, Any]) -> pa.Table:
    """Run `sql` with the (row_idx, language, content) of `table` registered as `shard`."""
    shard = pa.table(
        {
            "row_idx": pa.array(range(table.num_rows), pa.int64()),
            "language": table.column("language"),
            "content": table.column("content"),
        }
    )
    con.register("shard", shard)
    try:
        return con.execute(sql, params).to_arrow_table()
    finally:
        con.unregister("shard")


def build_rule(reason: str, node: Any) -> Rule:
    """Instantiate one `filter.rules.<reason>` node; ValueError names the key on one line."""
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
        return instantiate(node, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, BadThreshold):
            raise ValueError(f"{key}.{cause}") from err
        # A missing or unknown threshold: Python's TypeError names it ("unexpected keyword argument 'x'").
        message = " ".join(str(cause).split())
        raise ValueError(f"{key}: {message}") from err


def rules_from_config(section: Any) -> RuleSet:
    """The `filter.rules` mapping (reason -> `_target_` node), built in order; ValueError names a bad key."""
    rules = OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) else section
    if not isinstance(rules, Mapping):
        raise ValueError("filter.rules must be a mapping from drop reason to {_target_: ..., thresholds}")
    return RuleSet({str(reason): build_rule(str(reason), node) for reason, node in rules.items()})
