"""The shard skeleton: every shard transformed and written under its name, counts summed, atomic on failure."""

from __future__ import annotations

import functools

import pyarrow as pa
import pytest

from starbuild.core.shards import list_shards, read_shard
from starbuild.executors import TaskFailed
from starbuild.executors.local import LocalExecutor
from starbuild.shards.pipeline import (
    sum_counts,
    task_sizes,
    transform_shard_groups,
    transform_shards,
)
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


def keep_python_each(tables: list[pa.Table], groups: list[int],
                     fail_on: str | None = None) -> list[tuple[pa.Table, dict]]:
    groups.append(len(tables))
    return [keep_python(table, fail_on) for table in tables]


@pytest.mark.parametrize(("group", "workers"), [(2, 1), (3, 2)])
def test_shard_groups_write_and_return_what_single_shards_do(tmp_path, group, workers):
    rows = [raw_row("r", f"f{i}.{'py' if i % 3 else 'c'}", str(i), language="Python" if i % 3 else "C")
            for i in range(14)]
    inputs = list_shards(write_table(tmp_path / "in", [rows[i:i + 2] for i in range(0, 14, 2)]))
    single = transform_shards(inputs, tmp_path / "one", keep_python, LocalExecutor(1), desc="test",
                              cache=WorkCache(None))
    groups: list[int] = []
    sizes = [group] * (len(inputs) // group) + ([len(inputs) % group] if len(inputs) % group else [])
    grouped = transform_shard_groups(inputs, tmp_path / "many", functools.partial(keep_python_each, groups=groups),
                                     LocalExecutor(workers), desc="test", cache=WorkCache(None), sizes=sizes)
    assert grouped == single
    written = {name: [p.read_bytes() for p in list_shards(tmp_path / name)] for name in ("one", "many")}
    assert written["many"] == written["one"]
    if workers == 1:  # the calls happened in this process
        assert groups == [group] * (7 // group) + ([7 % group] if 7 % group else [])


def test_a_failing_group_reruns_alone_from_the_work_cache(tmp_path):
    rows = [raw_row("r", f"f{i}.py", str(i)) for i in range(6)]
    inputs = list_shards(write_table(tmp_path / "in", [rows[i:i + 1] for i in range(6)]))
    cache = WorkCache(tmp_path / "cache")
    groups: list[int] = []
    with pytest.raises(TaskFailed) as caught:
        transform_shard_groups(inputs, tmp_path / "out", functools.partial(keep_python_each, groups=groups,
                                                                           fail_on="f4.py"),
                               LocalExecutor(1), desc="test", cache=cache, sizes=[2, 2, 2])
    assert str(caught.value).startswith(f"test: {inputs[4]}, {inputs[5]} failed: RuntimeError: cannot read f4.py")
    assert len(list((tmp_path / "cache").iterdir())) == 2  # the two groups done, each with both its shards
    groups.clear()
    results = transform_shard_groups(inputs, tmp_path / "out", functools.partial(keep_python_each, groups=groups),
                                     LocalExecutor(1), desc="test", cache=cache, sizes=[2, 2, 2])
    assert groups == [2] and [r["kept"] for r in results] == [1] * 6
    assert [read_shard(p).column("path").to_pylist() for p in list_shards(tmp_path / "out")] == \
        [[f"f{i}.py"] for i in range(6)]


def test_task_sizes_leave_every_worker_tasks_to_balance_and_bound_the_bytes_a_task_holds():
    assert task_sizes([1] * 10, 2, most=4, most_bytes=100) == [1] * 10  # 16 tasks' worth are needed to group
    assert task_sizes([1] * 40, 2, most=4, most_bytes=100) == [2] * 20
    assert task_sizes([1] * 1000, 2, most=4, most_bytes=100) == [4] * 250
    assert task_sizes([1] * 1000, None, most=4, most_bytes=100) == [1] * 1000  # an executor that cannot say
    assert task_sizes([3] * 80, 1, most=4, most_bytes=7) == [2] * 40  # a third file would pass 7 bytes
    # Groups of 2 here (20 shards, 8 tasks a worker); a file of 8 bytes or more is a task alone.
    assert task_sizes([9, 1, 1, 20, 1] * 4, 1, most=4, most_bytes=8) == [1, 2, 1, 1] * 4
    assert task_sizes([], 2, most=4, most_bytes=8) == []


def test_task_sizes_must_cover_the_shards(tmp_path):
    inputs = list_shards(shards_of(tmp_path))
    with pytest.raises(ValueError, match="do not cover the 3 shards"):
        transform_shard_groups(inputs, tmp_path / "out", functools.partial(keep_python_each, groups=[]),
                               LocalExecutor(1), desc="test", cache=WorkCache(None), sizes=[2])
