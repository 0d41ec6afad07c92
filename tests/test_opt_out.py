"""Opt-out end to end: no row of any table, from data/raw/ to the packed tokens, names an opted-out origin.

The list is applied once, at pull (tests/test_pull.py checks that step); this test runs every data stage
after it on a corpus where opted-out users and repositories sit beside kept ones, and reads back every
table and the decoded tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from starbuild.clean.stage import run_clean
from starbuild.core import layout
from starbuild.core.shards import read_shard
from starbuild.dedup.stage import run_dedup
from starbuild.filters.stage import run_filter
from starbuild.format.stage import run_format
from starbuild.swh.stage import run_pull
from starbuild.tokenizer import bpe, pack
from starbuild.tokenizer.stage import run_tokenizer
from starbuild.tokenizer.tokenize_stage import run_tokenize
from tests.factories import code_only, stage_context, with_overrides

DATA_STAGES = (run_pull, run_filter, run_dedup, run_clean, run_format, run_tokenizer, run_tokenize)
# The user `bob` opted out entirely, `carol` for one repository.
OPT_OUT = "# test list\nbob\ncarol/gone\n"
PLANTED = {"alice/kept": True, "bob/tools": False, "bob/site": False, "carol/gone": False, "carol/stays": True}


def marker(origin: str) -> str:
    """A string that only `origin`'s files contain."""
    return "marker_" + origin.replace("/", "_") + "_x7q"


def module(origin: str, index: int) -> str:
    """A plain, distinct Python module of `origin` carrying its marker."""
    name = marker(origin)
    body = "".join(f"    total += value * {index * 10 + i}  # step {i} of {name}\n" for i in range(12))
    return (f'"""Helpers of {name}, module {index}."""\n\n\n'
            f"def {name}_{index}(value: int) -> int:\n    total = 0\n{body}    return total\n")


def planted_origins(base: Path) -> list[dict[str, str]]:
    """One directory per planted origin, with three modules each."""
    origins = []
    for origin in PLANTED:
        root = base / origin
        root.mkdir(parents=True)
        for index in range(3):
            (root / f"mod_{index}.py").write_text(module(origin, index), encoding="utf-8")
        origins.append({"name": origin, "path": str(root)})
    return origins


def strings(table: pa.Table) -> list[str]:
    """Every string value of every string column."""
    return [value for column in table.columns if pa.types.is_string(column.type)
            for value in column.to_pylist() if value is not None]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data stages, pull to tokens, run on the smoke corpus plus the planted origins."""
    from omegaconf import OmegaConf

    from starbuild.core.config import compose
    from tests.conftest import REPO_ROOT

    root = tmp_path_factory.mktemp("opt_out")
    smoke = compose(["experiment=smoke"], conf_dir=REPO_ROOT / "conf")
    (root / "opt_out.txt").write_text(OPT_OUT)
    origins = [*OmegaConf.to_container(smoke.source.origins), *planted_origins(root / "origins")]
    cfg = code_only(with_overrides(smoke, source={"origins": origins, "opt_out": str(root / "opt_out.txt")}))
    for stage in DATA_STAGES:
        stage(stage_context(stage.__name__.removeprefix("run_"), cfg, root))
    return root


def test_no_table_names_an_opted_out_origin(built: Path) -> None:
    tables = sorted((built / "data").rglob("*.parquet"))
    assert {path.relative_to(built / "data").parts[0] for path in tables} >= {
        "raw", "filtered", "dedup", "dedup_clusters", "clean", "docs"}
    seen = set()
    for path in tables:
        table = read_shard(path)
        if "repo_name" in table.column_names:
            names = set(table.column("repo_name").to_pylist())
            assert not {n for n in names if n.split("/")[0] == "bob" or n == "carol/gone"}, path
            seen |= names
        text = "\n".join(strings(table))
        for origin, kept in PLANTED.items():
            if not kept:
                assert marker(origin) not in text and origin not in text, (path, origin)
    # The kept planted origins went all the way through, so the checks above could have failed.
    assert {"alice/kept", "carol/stays"} <= seen


def test_the_packed_tokens_hold_no_opted_out_text(built: Path) -> None:
    tokenizer = bpe.load_tokenizer(built / layout.TOKENIZER)
    index = pack.read_index(built / layout.TOKENS)
    rows = [row for split in layout.SPLITS for row in pack.TokenShards(built / layout.TOKENS, split)]
    text = tokenizer.decode(np.concatenate(rows).tolist(), skip_special_tokens=False)
    assert index["splits"]["train"]["sequences"] > 0
    for origin, kept in PLANTED.items():
        assert (marker(origin) in text) == kept, origin
