"""conf/ composes into the committed params.yaml; dvc.yaml and conf/ agree; bad overrides fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from starbuild.core import layout
from starbuild.core.config import ConfigError, compose, render
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


def starbuild_files_imported_by(script: Path) -> set[Path]:
    """Every src/starbuild file that `script` imports, directly or through other starbuild modules."""
    import ast

    src = REPO_ROOT / "src"
    seen: set[Path] = set()
    pending = [script]
    while pending:
        tree = ast.parse(pending.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if not name.startswith("starbuild"):
                    continue
                parts = name.split(".")
                # Importing a.b.c runs the __init__ of every package on the way.
                for depth in range(1, len(parts) + 1):
                    base = src.joinpath(*parts[:depth])
                    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                        if candidate.is_file() and candidate not in seen:
                            seen.add(candidate)
                            pending.append(candidate)
    return seen


def test_every_stage_declares_the_code_it_runs_as_deps() -> None:
    # The package's own __init__ holds only its docstring and version.
    exempt = {REPO_ROOT / "src/starbuild/__init__.py"}
    for name, stage in dvc_stages().items():
        deps = [REPO_ROOT / d for d in stage.get("deps", [])]
        script = REPO_ROOT / stage["cmd"].split()[1]
        for file in starbuild_files_imported_by(script) - exempt:
            assert any(file == d or d in file.parents for d in deps), (
                f"stage {name} runs {file.relative_to(REPO_ROOT)} but does not list it in its dvc.yaml deps"
            )
