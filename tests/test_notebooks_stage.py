"""The notebooks stage: the pulled notebooks the license rule keeps, in both formats, every failure counted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from starbuild.core import layout
from starbuild.core.stage import StageContext
from starbuild.notebooks.stage import run_notebooks
from starbuild.special_tokens import JUPYTER_SCRIPT, JUPYTER_START
from starbuild.swh.stage import run_pull
from tests.factories import raw_row, stage_metrics, table_rows, with_overrides, write_table

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "notebooks"


def notebook(name: str, **overrides: object) -> dict:
    """A raw row holding one of the corpus's notebooks, as the pull writes it."""
    text = (CORPUS / name).read_text(encoding="utf-8")
    return raw_row(overrides.pop("repo_name", "acme/nb"), f"notebooks/{name}", text,
                   language="Jupyter Notebook", **overrides)


def rows_of(ctx: StageContext) -> list[dict]:
    return table_rows(ctx.root / layout.NOTEBOOKS)


def test_every_notebook_in_each_format_it_has_and_every_failure_counted(
    make_context: Callable[..., StageContext],
) -> None:
    ctx = make_context("notebooks")
    write_table(ctx.root / layout.RAW, [
        [notebook("word_frequencies.ipynb"), raw_row("acme/nb", "src/app.py", "print(1)\n")],
        [notebook("summary_statistics_r.ipynb"), notebook("interrupted_save.ipynb")],
    ])
    run_notebooks(ctx)
    formats = {(r["path"], r["format"], r["language"]) for r in rows_of(ctx)}
    # The script's language is go-enry's name for jupytext's extension of the kernel's language.
    assert formats == {("notebooks/word_frequencies.ipynb", "jupyter_script", "Python"),
                       ("notebooks/word_frequencies.ipynb", "jupyter_structured", "Python"),
                       ("notebooks/summary_statistics_r.ipynb", "jupyter_script", "R")}
    texts = {(r["path"], r["format"]): r["text"] for r in rows_of(ctx)}
    assert texts[("notebooks/word_frequencies.ipynb", "jupyter_structured")].startswith(JUPYTER_START)
    assert texts[("notebooks/summary_statistics_r.ipynb", "jupyter_script")].startswith(JUPYTER_SCRIPT)
    assert "mean(x)" in texts[("notebooks/summary_statistics_r.ipynb", "jupyter_script")]
    metrics = stage_metrics(ctx)
    assert metrics["notebooks"] == 3 and metrics["license_dropped"] == 0
    assert metrics["unreadable"]["invalid_json"] == 1
    assert metrics["jupyter_script"]["converted"] == 2 and not any(metrics["jupyter_script"]["failed"].values())
    assert metrics["jupyter_structured"]["converted"] == 1
    assert metrics["jupyter_structured"]["failed"]["not_python"] == 1


def test_the_filters_license_rule_decides_which_notebooks_are_kept(
    make_context: Callable[..., StageContext], smoke_cfg: DictConfig,
) -> None:
    rows = [[notebook("word_frequencies.ipynb", repo_name="gpl/nb", license_type="non_permissive"),
             notebook("word_frequencies.ipynb", repo_name="free/nb", license_type="no_license")]]
    ctx = make_context("notebooks")
    write_table(ctx.root / layout.RAW, rows)
    run_notebooks(ctx)
    assert {r["repo_name"] for r in rows_of(ctx)} == {"free/nb"}
    assert stage_metrics(ctx)["license_dropped"] == 1
    # With the license rule switched off (as `-S filter.rules.license.enabled=false`), every notebook goes on.
    ctx = make_context("notebooks", with_overrides(smoke_cfg, filter={"rules": {"license": {"enabled": False}}}))
    write_table(ctx.root / layout.RAW, rows)
    run_notebooks(ctx)
    assert {r["repo_name"] for r in rows_of(ctx)} == {"gpl/nb", "free/nb"}


@pytest.mark.parametrize("workers", [1, 2])
def test_the_embedded_notebooks_go_from_pull_to_both_formats(
    make_context: Callable[..., StageContext], smoke_cfg: DictConfig, workers: int,
) -> None:
    cfg = with_overrides(smoke_cfg, source={"origins": [{"name": "starbuild/notebooks", "path": "corpus/notebooks",
                                                         "license": "MIT"}]}, executor={"workers": workers})
    run_pull(make_context("pull", cfg))
    ctx = make_context("notebooks", cfg)
    run_notebooks(ctx)
    assert sorted((r["path"], r["format"]) for r in rows_of(ctx)) == [
        ("summary_statistics_r.ipynb", "jupyter_script"), ("word_frequencies.ipynb", "jupyter_script"),
        ("word_frequencies.ipynb", "jupyter_structured")]
    assert stage_metrics(ctx)["unreadable"]["invalid_json"] == 1
