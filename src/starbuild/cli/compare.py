"""`starbuild report`: where the report is, or two revisions' metrics and filter funnel side by side.

A revision is read the way `dvc metrics diff` reads it: DVC resolves the name (commit, branch, tag,
or an experiment name, as `dvc exp show` lists them) and `Repo.metrics.show` reads every metrics file
dvc.yaml declares as it was at that commit, from git or the DVC cache. The rule order of the funnel
comes from that revision's plots/filter_funnel.csv (the filter stage writes it in rule order).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from starbuild.cli import NotFound, print_json
from starbuild.core import layout
from starbuild.report.summary import flatten

if TYPE_CHECKING:
    from dvc.repo import Repo

# `dvc metrics diff`'s name for the files on disk.
WORKSPACE = "workspace"
# What the report stage writes, the page first.
REPORT_FILES = (layout.REPORT_PAGE, layout.REPORT_SUMMARY, layout.DATASET_CARD)
FILTER_METRICS = layout.metrics_file("filter")
FUNNEL_PLOT = layout.PLOTS / "filter_funnel.csv"
# metrics/filter.json's totals, shown above and below the rules in the funnel.
_TOTALS = ("input_files", "input_bytes", "kept_files", "kept_bytes")


@dataclass
class Side:
    """One revision's metrics files (path -> parsed content) and the files DVC could not read."""

    name: str
    rev: str
    metrics: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    rule_order: list[str] | None = None

    @property
    def label(self) -> str:
        """The name as typed, with the commit it resolved to when that differs."""
        short = self.rev[:7]
        return self.name if self.rev == WORKSPACE or self.name.startswith(short) else f"{self.name} ({short})"


def show_report_paths(root: Path, as_json: bool) -> int:
    """Print where the report stage's files are; NotFound when it has not run."""
    found = [root / rel for rel in REPORT_FILES if (root / rel).is_file()]
    if not found:
        raise NotFound(f"no report in {root / layout.REPORT_SUMMARY.parent}: run `dvc repro report`")
    if as_json:
        print_json({"reports": [str(path) for path in found]})
    else:
        print("\n".join(map(str, found)))
    return 0


def open_repo(root: Path) -> Repo:
    """The DVC project at `root`, or NotFound naming --root."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Repo(str(root))
    except NotDvcRepoError as err:
        raise NotFound(f"{root} is not a DVC project (no .dvc/): pass --root or cd into one") from err


def resolve(repo: Repo, name: str) -> str:
    """The commit `name` names (as `dvc metrics diff` resolves it, experiment names included), or WORKSPACE."""
    from dvc.scm import NoSCMError, RevError, SCMError, resolve_rev

    if name == WORKSPACE:
        return WORKSPACE
    try:
        return resolve_rev(repo.scm, name)
    except RevError as err:  # a subclass of SCMError: caught first
        raise NotFound(f"unknown revision '{name}': not a commit, branch, tag or experiment of this project; "
                       "list experiments with `dvc exp show` (branches: `git branch -a`)") from err
    except (NoSCMError, SCMError) as err:
        raise NotFound(f"cannot resolve '{name}': {repo.root_dir} is not a git repository") from err


def read_side(repo: Repo, name: str) -> Side:
    """Every metrics file of revision `name` and its funnel's rule order."""
    side = Side(name, resolve(repo, name))
    shown = repo.metrics.show(revs=None if side.rev == WORKSPACE else [side.rev], hide_workspace=False)
    result = shown.get("" if side.rev == WORKSPACE else side.rev, {})
    if "error" in result:
        side.errors["*"] = _one_line(result["error"])
    for path, file_result in result.get("data", {}).items():
        key = PurePosixPath(*Path(path).parts).as_posix()
        if "error" in file_result:
            side.errors[key] = _one_line(file_result["error"])
        else:
            side.metrics[key] = file_result.get("data", {})
    side.rule_order = _funnel_rules(repo, side.rev)
    return side


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _funnel_rules(repo: Repo, rev: str) -> list[str] | None:
    """The rules of plots/filter_funnel.csv at `rev`, in their order; None when the file is not there."""
    import dvc.api

    try:
        text = dvc.api.read(str(FUNNEL_PLOT), repo=repo.root_dir, rev=None if rev == WORKSPACE else rev)
    except Exception:  # noqa: BLE001 - any failure to read it (absent, not cached) falls back to the metrics' order
        return None
    return [row["rule"] for row in csv.DictReader(io.StringIO(text)) if row.get("rule") not in (None, "input")]


def scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Every scalar metric as `<file>.<dotted key>` (the file's path under metrics/, without suffix)."""
    found: dict[str, Any] = {}
    for path, data in metrics.items():
        stem = PurePosixPath(path).with_suffix("").as_posix().removeprefix(f"{layout.METRICS.as_posix()}/")
        pairs = flatten(data, f"{stem}.") if isinstance(data, Mapping) else [(stem, data)]
        found.update({key: value for key, value in pairs if not isinstance(value, list | tuple)})
    return found


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def change(old: Any, new: Any) -> Any:
    """new - old for two numbers, else None."""
    return new - old if _number(old) and _number(new) else None


def funnel(metrics: Mapping[str, Any], order: list[str] | None) -> dict[str, Any] | None:
    """A side's filter funnel: totals and the files and bytes each rule dropped first, in rule order."""
    data = metrics.get(FILTER_METRICS.as_posix())
    if not isinstance(data, Mapping) or "dropped_first" not in data:
        return None
    first = data["dropped_first"]
    rules = [r for r in (order or []) if r in first] + [r for r in first if r not in (order or [])]
    return {**{key: data.get(key) for key in _TOTALS}, "rules": rules,
            "dropped_first": {rule: dict(first[rule]) for rule in rules}}


def compare(root: Path, old_name: str, new_name: str) -> dict[str, Any]:
    """Both revisions' scalar metrics with the change, and both filter funnels, as plain data (the --json output)."""
    repo = open_repo(root)
    try:
        old, new = read_side(repo, old_name), read_side(repo, new_name)
    finally:
        repo.close()
    a, b = scalars(old.metrics), scalars(new.metrics)
    metrics = {key: {"old": a.get(key), "new": b.get(key), "diff": change(a.get(key), b.get(key))}
               for key in sorted(a.keys() | b.keys())}
    funnels = {"old": funnel(old.metrics, old.rule_order), "new": funnel(new.metrics, new.rule_order)}
    rules = [r for side in funnels.values() if side for r in side["rules"]]
    return {
        "revs": {role: {"name": side.name, "rev": side.rev, "label": side.label}
                 for role, side in (("old", old), ("new", new))},
        "metrics": metrics,
        "funnel": {"rules": list(dict.fromkeys(rules)), **funnels},
        "errors": {"old": old.errors, "new": new.errors},
    }


# --- terminal output -----------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if _number(value):
        return f"{value:,}"
    return str(value)


def _signed(value: Any) -> str:
    if value is None:
        return ""
    return "0" if value == 0 else ("+" if value > 0 else "") + _fmt(value)


def _funnel_cells(side: dict[str, Any] | None, key: str, rule: str | None) -> tuple[Any, Any]:
    """(files, bytes) of one funnel row of one side: a total (`key`) or what `rule` dropped first."""
    if side is None:
        return None, None
    if rule is None:
        return side.get(f"{key}_files"), side.get(f"{key}_bytes")
    dropped = side["dropped_first"].get(rule)
    return (dropped["files"], dropped["bytes"]) if dropped else (None, None)


def render(result: dict[str, Any], changed_only: bool = False) -> None:
    """The metrics table and the funnel table on the terminal (rich), then what could not be read."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    old, new = result["revs"]["old"]["label"], result["revs"]["new"]["label"]
    table = Table(title=f"metrics: {old} -> {new}", title_justify="left")
    table.add_column("metric", overflow="fold")
    for name in (old, new, "change"):
        table.add_column(name, justify="right", no_wrap=True)
    rows = [(key, row) for key, row in result["metrics"].items() if not changed_only or row["old"] != row["new"]]
    for key, row in rows:
        table.add_row(key, _fmt(row["old"]), _fmt(row["new"]), _signed(row["diff"]))
    console.print(table if rows else f"no metric differs between {old} and {new}")

    sides = result["funnel"]
    if sides["old"] or sides["new"]:
        table = Table(title=f"filter funnel: what each rule dropped first, in rule order (old = {old}, new = {new})",
                      title_justify="left")
        table.add_column("rule", no_wrap=True)
        for name in ("old files", "new files", "change", "old bytes", "new bytes", "change"):
            table.add_column(name, justify="right", no_wrap=True)
        steps = [("input", "input", None)] + [(rule, "", rule) for rule in sides["rules"]] + [("kept", "kept", None)]
        for label, key, rule in steps:
            (a_files, a_bytes), (b_files, b_bytes) = (_funnel_cells(sides[role], key, rule) for role in ("old", "new"))
            table.add_row(label, _fmt(a_files), _fmt(b_files), _signed(change(a_files, b_files)),
                          _fmt(a_bytes), _fmt(b_bytes), _signed(change(a_bytes, b_bytes)))
        console.print(table)
    else:
        console.print(f"no filter funnel: neither side has {FILTER_METRICS}")
    for role, errors in result["errors"].items():
        for path, error in errors.items():
            console.print(f"not read at {result['revs'][role]['label']}: {path} ({error})", markup=False)
