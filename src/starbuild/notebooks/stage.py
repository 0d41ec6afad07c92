"""The `notebooks` stage: the pulled Jupyter notebooks in The Stack v2's two training formats.

Every raw file go-enry calls a Jupyter Notebook, and whose license the filter's `license` rule keeps,
becomes up to two rows of data/notebooks/: `jupyter_script` (the notebook as a script of its language)
and `jupyter_structured` (Python notebooks: text, code and each run's last output). A notebook that
cannot be read, or not put in a format, is counted under its reason in metrics/notebooks.json.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import OmegaConf

from starbuild.core import layout, schemas
from starbuild.core.stage import StageContext, StageError
from starbuild.executors import make_executor
from starbuild.filters.query import RuleSet, rules_from_config
from starbuild.notebooks.convert import (
    REASONS,
    NotebookError,
    jupyter_script,
    jupyter_structured,
    read_notebook,
    script_language,
)
from starbuild.shards.pipeline import sum_counts, transform_shards
from starbuild.work_cache import WorkCache

log = logging.getLogger(__name__)

# go-enry's name for `.ipynb` files.
NOTEBOOK_LANGUAGE = "Jupyter Notebook"
FORMATS: Mapping[str, Callable[[Any], str]] = {"jupyter_script": jupyter_script,
                                               "jupyter_structured": jupyter_structured}
# The filter rule whose verdict notebooks share with files (they skip the other rules: go-enry's language
# is not a programming language of the smol set, and their JSON is not what the line rules measure).
LICENSE_RULE = "license"


def empty_counts() -> dict[str, Any]:
    """Every count of a shard at zero, so metrics name every format and reason even when nothing failed."""
    return {"notebooks": 0, "license_dropped": 0, "unreadable": dict.fromkeys(REASONS, 0),
            **{name: {"converted": 0, "failed": dict.fromkeys(REASONS, 0)} for name in FORMATS}}


def convert_table(table: pa.Table, license_rule: RuleSet) -> tuple[pa.Table, dict[str, Any]]:
    """The notebooks of a raw shard in every format (rows of schemas.NOTEBOOKS) and the shard's counts."""
    counts = empty_counts()
    notebooks = table.filter(pc.fill_null(pc.equal(table.column("language"), NOTEBOOK_LANGUAGE), False))
    counts["notebooks"] = notebooks.num_rows
    if license_rule.rules and notebooks.num_rows:
        dropped = license_rule.verdicts(notebooks)[LICENSE_RULE]
        counts["license_dropped"] = int(dropped.sum())
        notebooks = notebooks.filter(pa.array(~dropped))
    rows = []
    for row in notebooks.select(["blob_id", "repo_name", "path", "license_type", "content"]).to_pylist():
        try:
            notebook = read_notebook(row.pop("content") or "")
        except NotebookError as err:
            counts["unreadable"][err.reason] += 1
            continue
        for name, convert in FORMATS.items():
            try:
                language = script_language(notebook) if name == "jupyter_script" else "Python"
                rows.append({**row, "format": name, "language": language, "text": convert(notebook)})
            except NotebookError as err:
                counts[name]["failed"][err.reason] += 1
            else:
                counts[name]["converted"] += 1
    return pa.Table.from_pylist(rows, schema=schemas.NOTEBOOKS), counts


def license_rule_of(ctx: StageContext) -> RuleSet:
    """The filter's `license` rule alone (none when the filter has no such rule or it is switched off)."""
    rules = ctx.cfg.filter.get("rules") or {}
    chosen = {LICENSE_RULE: OmegaConf.to_container(rules[LICENSE_RULE], resolve=True)} if LICENSE_RULE in rules else {}
    try:
        return rules_from_config(chosen, ctx.root)
    except (ValueError, TypeError) as err:
        raise StageError(f"{err}; fix conf/filter/") from err


def run_notebooks(ctx: StageContext) -> None:
    """Write data/notebooks/ (every kept notebook in each format, shard for raw shard) and its counts."""
    shards = ctx.input_shards(layout.RAW, schemas.RAW)
    job = functools.partial(convert_table, license_rule=license_rule_of(ctx))
    results = transform_shards(shards, ctx.output(layout.NOTEBOOKS), job, make_executor(ctx.cfg.executor),
                               desc="notebooks", cache=WorkCache.for_stage(ctx.name, ctx.root, ctx.cfg))
    metrics = sum_counts([empty_counts(), *results])
    log.info("%d notebooks: %s scripts, %s structured -> %s", metrics["notebooks"],
             metrics["jupyter_script"]["converted"], metrics["jupyter_structured"]["converted"],
             ctx.output(layout.NOTEBOOKS))
    ctx.write_metrics(metrics)
