"""The shard skeleton: every shard transformed and written under its name, counts summed, atomic on failure."""

from __future__ import annotations

import functools

import pyarrow as pa
import pytest

from starbuild.core.shards import list_shards, read_shard
from starbuild.executors import TaskFailed
from starbuild.executors.local import LocalExecutor
from starbuild.shards.pipeline import sum_counts, transform_shards
from starbuild.work_cache import WorkCache
from tests.factories import raw_row, write_table


def keep_python(table: pa.Table, fail_on: str | None = None) -> tuple[pa.Table, dict]:
    if fail_on and fail_on in table.column("path").to_pylist():
        raise RuntimeError(f"cannot read {fail_on}")
    languages = table.column("language").to_pylist()
    kept = table.filter(pa.array([lang == "Python" for lang in languages], pa.bool_()))
    others = {lang: languages.count(lang) for lang in set(languages) - {"Python"}}
    return kept, {"rows": table.num_rows, "kept": kept.num_rows, "dropped": others}


def count_calls(table: pa.Table, calls: list[str]) -> tuple[pa.Table, dict]:
    calls += table.column("path").to_pylist()[:1]
    return keep_python(table)


def shards_of(tmp_path):
    c_file, js_file = raw_row("r", "e.c", "e", language="C"), raw_row("r", "d.js", "d", language="JavaScript")
    return write_table(tmp_path / "in", [
        [raw_row("r", "a.py", "a"), raw_row("r", "b.c", "b", language="C")],
        [],
        [raw_row("r", "c.py", "c"), js_file, c_file],
    ])


@pytest.mark.parametrize("workers", [1, 2])
def test_transform_writes_every_shard_and_sums_counts(tmp_path, workers):
    inputs = list_shards(shards_of(tmp_path))
    out = tmp_path / "out"
    counts = sum_counts(transform_shards(inputs, out, keep_python, LocalExecutor(workers), desc="test",
                                         cache=WorkCache(None)))
    assert counts == {"rows": 5, "kept": 2, "dropped": {"C": 2, "JavaScript": 1}}
    assert [p.name for p in list_shards(out)] == [p.name for p in inputs]
    assert [[r["path"] for r in read_shard(p).to_pylist()] for p in list_shards(out)] == [["a.py"], [], ["c.py"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no temporary directory left


def test_a_failing_shard_is_named_and_leaves_no_output(tmp_path):
    inputs = list_shards(shards_of(tmp_path))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("previous output stays until a run succeeds")
    fn = functools.partial(keep_python, fail_on="d.js")
    cache = WorkCache(tmp_path / "cache")
    with pytest.raises(TaskFailed) as caught:
        transform_shards(inputs, tmp_path / "out", fn, LocalExecutor(1), desc="test", cache=cache)
    assert str(caught.value) == f"test: {inputs[2]} failed: RuntimeError: cannot read d.js"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "in", "out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]
    # The two shards done before the failure are kept for the rerun, which runs only the third.
    assert len(list((tmp_path / "cache").iterdir())) == 2
    calls: list[str] = []
    counts = sum_counts(transform_shards(inputs, tmp_path / "out", functools.partial(count_calls, calls=calls),
                                         LocalExecutor(1), desc="test", cache=cache))
    assert calls == ["c.py"] and counts == {"rows": 5, "kept": 2, "dropped": {"C": 2, "JavaScript": 1}}
    assert not (tmp_path / "cache").exists(), "a finished run drops its entries"


def test_sum_counts_nested_and_missing_keys():
    assert sum_counts([]) == {}
    assert sum_counts([{"a": 1, "d": {"x": 1}}, {"a": 2, "b": 5, "d": {"y": 2, "x": 3}}]) == {
        "a": 3, "b": 5, "d": {"x": 4, "y": 2}}
