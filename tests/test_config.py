"""conf/ composes into the committed params.yaml; dvc.yaml and conf/ agree; bad overrides fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from starbuild import layout
from starbuild.config.compose import ConfigError, compose, render
from tests.conftest import REPO_ROOT

STAGES = ["pull", "filter", "dedup", "clean", "format", "tokenizer", "tokenize", "train", "export", "eval",
          "report"]


def dvc_stages() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def test_committed_params_equal_the_composition_of_conf() -> None:
    committed = (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")
    assert committed == render(compose([], conf_dir=REPO_ROOT / "conf")), "run `make params` and commit"


def test_dag_has_the_eleven_stages_in_order() -> None:
    assert list(dvc_stages()) == STAGES


def test_every_declared_param_exists_and_no_stage_declares_hydra_runtime() -> None:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for name, stage in dvc_stages().items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"stage {name} declares missing param {key}"
                node = node[part]
    assert "hydra" not in params


def test_stage_outs_are_the_layout_paths() -> None:
    declared = {Path(next(iter(o)) if isinstance(o, dict) else o)
                for stage in dvc_stages().values() for o in stage.get("outs", [])}
    expected = {layout.RAW, layout.FILTERED, layout.DEDUP, layout.DEDUP_CLUSTERS, layout.CLEAN, layout.DOCS,
                layout.TOKENIZER, layout.TOKENS, layout.CHECKPOINTS, layout.HF_MODEL, layout.REPORTS}
    assert declared == expected


def test_every_stage_script_exists_and_is_thin() -> None:
    for name, stage in dvc_stages().items():
        script = REPO_ROOT / stage["cmd"].split()[1]
        assert script.is_file(), name
        assert len(script.read_text().splitlines()) < 12, f"{script} should only call src/"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("executor=ray", r"unknown value 'ray' for config group 'executor'; choose one of: local"),
        ("model=huge", r"choose one of: small, tiny"),
        ("train.no_such_key=1", r"Could not override 'train.no_such_key'"),
    ],
)
def test_bad_overrides_fail_with_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        compose([override], conf_dir=REPO_ROOT / "conf")
    assert "\n" not in str(info.value)


def test_group_swap_and_value_override_compose() -> None:
    cfg = compose(["model=small", "train.lr=0.01"], conf_dir=REPO_ROOT / "conf")
    assert cfg.model.name == "small" and cfg.train.lr == 0.01
    assert cfg.model.vocab_size == cfg.tokenizer.bpe.vocab_size
