"""conf/ composes into the committed params.yaml; dvc.yaml and conf/ agree; bad overrides fail clearly."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from starbuild.core import layout
from starbuild.core.config import ConfigError, compose, render
from starbuild.report.stage import metrics_deps
from tests.conftest import METRICS_STAGES, REPO_ROOT


def dvc_stages() -> dict:
    return layout.dag_stages(REPO_ROOT)


def test_committed_params_equal_the_composition_of_conf() -> None:
    committed = (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")
    assert committed == render(compose([], conf_dir=REPO_ROOT / "conf")), "run `make params` and commit"


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
    declared = {out for spec in dvc_stages().values() for out in layout.declared_paths(spec, "outs")}
    # Every table or model path in layout.py is some stage's out (metrics and plots are files in folders;
    # logs and the report page hold what depends on the machine or the checkout, never an out).
    expected = {value for value in vars(layout).values() if isinstance(value, Path)} - {
        layout.METRICS, layout.PLOTS, layout.LOGS, layout.REPORT_PAGE}
    assert declared == expected


def test_report_depends_on_every_metrics_file_in_dag_order() -> None:
    # Each stage's metrics/<stage>.json, named as its own out: the report reads exactly its deps.
    declared = [m for s in dvc_stages().values() for m in layout.declared_paths(s, "metrics")]
    assert declared == [layout.metrics_file(stage) for stage in METRICS_STAGES]
    assert metrics_deps(REPO_ROOT, "report") == declared, "list every metrics file as a dep of `report`"


def test_every_stage_script_exists_and_is_thin() -> None:
    for name, stage in dvc_stages().items():
        script = REPO_ROOT / stage["cmd"].split()[1]
        assert script.is_file(), name
        assert len(script.read_text().splitlines()) < 12, f"{script} should only call src/"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("executor=nosuch", r"unknown value 'nosuch' for config group 'executor'; choose one of: local, ray"),
        ("model=huge", r"choose one of: 15b, 3b, 7b, micro, small, tiny"),
        ("trainer.no_such_key=1", r"^trainer.no_such_key: Key 'no_such_key' not in 'TrainerConfig' "
                                  r"\(fix the override `trainer.no_such_key=1`\)$"),
        ("train.batch_size=abc", r"^train.batch_size: Value 'abc' of type 'str' could not be converted to Integer"),
        ("optim.min_lr=1", r"^optim.min_lr must be within \[0, lr=0.003\], got 1.0; fix conf/optim/$"),
        ("model.num_key_value_heads=3", r"^model.num_attention_heads \(4\) must be a multiple of num_key_value_heads"),
    ],
)
def test_bad_overrides_fail_with_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        compose([override], conf_dir=REPO_ROOT / "conf")
    assert "\n" not in str(info.value)


def test_make_params_reports_a_bad_value_in_one_line(tmp_path: Path) -> None:
    # `python -m` runs the module as __main__: the error class raised elsewhere must still be caught.
    result = subprocess.run([sys.executable, "-m", "starbuild.core.config", "dedup.threshold=1.5",
                             "--output", str(tmp_path / "params.yaml")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and not (tmp_path / "params.yaml").exists()
    assert result.stderr.strip().splitlines() == [
        "error: dedup.threshold must be a number in (0, 1), got 1.5; fix conf/dedup/"]


def test_a_wrong_key_in_a_conf_file_names_the_file(tmp_path: Path) -> None:
    conf = shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    with (conf / "trainer" / "cpu.yaml").open("a") as handle:
        handle.write("max_step: 5\n")
    with pytest.raises(ConfigError, match=r"^trainer.max_step: Key 'max_step' not in 'TrainerConfig' "
                                          r"\(fix conf/trainer/cpu.yaml\)$"):
        compose([], conf_dir=conf)


def test_group_swap_and_value_override_compose() -> None:
    cfg = compose(["model=small", "optim.lr=0.01", "trainer=gpu"], conf_dir=REPO_ROOT / "conf")
    assert cfg.model.hidden_size == 256 and cfg.optim.lr == 0.01
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.max_steps == compose([]).trainer.max_steps
    assert cfg.model.vocab_size == cfg.tokenizer.bpe.vocab_size


@pytest.mark.parametrize(("group", "base"), [("model", "tiny"), ("trainer", "cpu")])
def test_presets_list_only_what_differs_from_their_base(group: str, base: str) -> None:
    base_values = yaml.safe_load((REPO_ROOT / "conf" / group / f"{base}.yaml").read_text())
    presets = [p for p in (REPO_ROOT / "conf" / group).glob("*.yaml") if p.stem != base]
    assert presets
    for path in presets:
        preset = yaml.safe_load(path.read_text())
        assert preset.pop("defaults") == [base], path
        assert all(base_values[key] != value for key, value in preset.items()), f"{path} repeats its base"
        composed = compose([f"{group}={path.stem}"], conf_dir=REPO_ROOT / "conf")[group]
        assert set(composed) == set(base_values)


def dvc_compose(tmp_path: Path, overrides: list[str], plugins_path: str) -> subprocess.CompletedProcess:
    """Compose conf/ the way `dvc exp run -S` does, in a fresh process (DVC's own Hydra composition)."""
    code = (
        "import sys; from dvc.utils.hydra import compose_and_dump; "
        "compose_and_dump(sys.argv[1], sys.argv[2], None, 'config', sys.argv[3], sys.argv[4:])"
    )
    out = tmp_path / "params.yaml"
    return subprocess.run([sys.executable, "-c", code, str(out), str(REPO_ROOT / "conf"), plugins_path, *overrides],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_dvc_exp_run_composition_checks_types_through_the_plugin(tmp_path: Path) -> None:
    plugins_path = read_dvc_config()["hydra"]["plugins_path"]
    plugins = str(REPO_ROOT / plugins_path)
    ok = dvc_compose(tmp_path, [], plugins)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "params.yaml").read_text() == (REPO_ROOT / "params.yaml").read_text()
    bad = dvc_compose(tmp_path, ["train.batch_size=abc"], plugins)
    assert bad.returncode != 0 and "could not be converted to Integer" in bad.stderr
    # Without the plugin path the schema is unknown: the plugin is what registers it.
    missing = dvc_compose(tmp_path, [], str(tmp_path))
    assert missing.returncode != 0 and "starbuild_schema" in missing.stderr


def read_dvc_config() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / ".dvc" / "config")
    return config
