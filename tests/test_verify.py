"""make verify's comparison: every out named, the first differing stage found, missing outs never pass."""

from __future__ import annotations

from starbuild.verify import compare, lock_outs, report

LOCK = """
schema: '2.0'
stages:
  pull:
    cmd: python stages/pull.py
    outs:
    - path: data/raw
      hash: md5
      md5: aaaa1111.dir
  train:
    cmd: python stages/train.py
    outs:
    - path: models/checkpoints
      md5: bbbb2222.dir
    - path: metrics/train.json
      md5: cccc3333
  eval:
    cmd: python stages/eval.py
    outs:
    - path: metrics/eval.json
      md5: dddd4444
"""


def test_identical_locks_all_match() -> None:
    checks = compare(lock_outs(LOCK), lock_outs(LOCK))
    assert [(c.stage, c.path) for c in checks] == [
        ("pull", "data/raw"), ("train", "models/checkpoints"), ("train", "metrics/train.json"),
        ("eval", "metrics/eval.json"),
    ]
    assert all(c.same for c in checks)
    assert report(checks).endswith("all 4 outs reproduce dvc.lock")


def test_first_differing_stage_is_named_in_dag_order() -> None:
    rebuilt = lock_outs(LOCK.replace("bbbb2222", "eeee5555").replace("dddd4444", "ffff6666"))
    text = report(compare(lock_outs(LOCK), rebuilt))
    assert "models/checkpoints       bbbb2222   eeee5555   DIFFERS" in text
    assert text.splitlines()[-1].startswith("first stage that differs: train (models/checkpoints)")


def test_an_out_missing_from_either_side_differs() -> None:
    expected = lock_outs(LOCK)
    rebuilt = lock_outs(LOCK)
    del rebuilt["eval"]
    rebuilt["pull"]["data/extra"] = "9999"
    checks = {(c.stage, c.path): c for c in compare(expected, rebuilt)}
    assert not checks[("eval", "metrics/eval.json")].same
    assert not checks[("pull", "data/extra")].same
