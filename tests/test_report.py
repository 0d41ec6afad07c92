"""The report renders every stage's metrics and names a missing one."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from starbuild.core import layout
from starbuild.core.stage import StageContext, StageError
from starbuild.report.stage import run_report
from starbuild.report.summary import flatten, render
from tests.conftest import METRICS_STAGES


def test_flatten_sorts_and_dots_nested_keys() -> None:
    assert flatten({"b": 1, "a": {"y": 2, "x": [1, 2]}}) == [("a.x", [1, 2]), ("a.y", 2), ("b", 1)]


def test_render_has_a_section_per_stage_and_origins_table() -> None:
    metrics = {stage: {"files": 10, "ratio": 0.5} for stage in METRICS_STAGES}
    metrics["pull"]["origins"] = {
        "pypi/x": {"files": 3, "bytes": 1234, "files_by_license_type": {"permissive": 2, "no_license": 1},
                   "declared_licenses": [], "detected_licenses": ["MIT"], "directory_swhid": "swh:1:dir:" + "0" * 40}
    }
    text = render(metrics)
    for stage in METRICS_STAGES:
        assert f"## {stage}\n" in text
    assert "| pypi/x | 3 | 1,234 | no_license 1, permissive 2 | MIT |" in text
    assert "| files | 10 |" in text and "| ratio | 0.5 |" in text


def test_run_report_writes_summary_and_fails_clearly_without_metrics(
    make_context: Callable[..., StageContext],
) -> None:
    ctx = make_context("report")
    with pytest.raises(StageError, match="metrics/pull.json does not exist"):
        run_report(ctx)
    for stage in METRICS_STAGES:
        path = ctx.root / layout.metrics_file(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"count": 1}))
    run_report(ctx)
    assert "## eval" in (ctx.root / layout.REPORT_SUMMARY).read_text()
    assert (ctx.root / layout.DATASET_CARD).is_file() and (ctx.root / layout.REPORT_PAGE).is_file()
    (ctx.root / layout.metrics_file("train")).write_text('{"count": ')
    with pytest.raises(StageError, match=r"^metrics/train.json is not readable \(JSONDecodeError: .*\); restore it "
                                         r"with `git checkout -- metrics/train.json` or rebuild it with "
                                         r"`dvc repro -f -s train`$"):
        run_report(ctx)


FULL_METRICS = {
    "pull": {"files": 10, "bytes": 1000, "languages": {"Python": 6, "C": 3, "unknown": 1},
             "files_by_license_type": {"permissive": 7, "no_license": 2, "non_permissive": 1},
             "origins": {"pypi/x": {"files": 10, "bytes": 1000, "declared_licenses": [], "detected_licenses": ["MIT"],
                                    "directory_swhid": "swh:1:dir:" + "1" * 40, "snapshot_swhid": None}}},
    "filter": {"input_files": 10, "input_bytes": 1000, "kept_files": 6, "kept_bytes": 700,
               "dropped_first": {"low_alpha": {"files": 1, "bytes": 100}, "license": {"files": 3, "bytes": 200}}},
    "dedup": {"kept_files": 5, "clusters": {"exact_blob": 1, "near_dup": 0},
              "dropped": {"exact_blob": 1, "near_dup": 0},
              "cluster_sizes": {"exact_blob": {"2": 1}, "near_dup": {}}},
    "clean": {"files": 5, "pii": {"email": 2, "key": 0}, "decontaminated": {"humaneval": 1},
              "languages": {"Python": {"files": 4, "bytes": 500}, "C": {"files": 1, "bytes": 100}},
              "license_types": {"permissive": {"files": 4, "bytes": 450}, "no_license": {"files": 1, "bytes": 150}}},
    "eval": {"humaneval/pass@1": 0.25, "val/loss": 2.5, "val/Python/bits_per_byte": 1.5, "val/C/bits_per_byte": 2.0},
    "notebooks": {"notebooks": 3, "jupyter_script": {"converted": 2}, "jupyter_structured": {"converted": 1}},
    "issues": {"conversations": 4, "issues": 2, "dropped": {"too_short": 2, "single_user": 0},
               "pull_requests": {"conversations": 5, "pull_requests": 1,
                                 "dropped": {"subsampled": 3, "too_long": 1, "no_diff": 0}}},
    "clean_sources": {"sources": {"notebooks": {"near_dup_removed": 1, "malware_removed": 0},
                                  "issues": {"decontaminated_removed": 2, "pii_failed": 0}}},
    "mixture": {"sources": {"code": {"epochs": 1.0, "train_docs": 9, "train_tokens": 900, "share": 0.9},
                            "issues": {"epochs": 2.5, "train_docs": 4, "train_tokens": 100, "share": 0.1}}},
}


def _marks(dom: object, figure: str) -> dict[tuple[str, str], float]:
    found = dom.select_one(f'figure[data-figure="{figure}"]')
    return {(m["data-series"], m["data-label"]): float(m["data-value"]) for m in found.select(".bar, .point")}


def test_page_has_every_section_and_draws_the_metrics_numbers() -> None:
    from bs4 import BeautifulSoup

    from starbuild.report.page import SECTIONS, PageInputs, render_page

    inputs = PageInputs(metrics=FULL_METRICS, curves={"train_loss": [(1, 3.0), (2, 2.5)], "train_lr": [(1, 1e-3)]},
                        commit="abc", outs={"data/raw": "f" * 32}, changed_params={"optim.lr": (0.001, 0.003)},
                        rule_order=["license", "low_alpha"])
    dom = BeautifulSoup(render_page(inputs), "html.parser")
    assert [s["id"] for s in dom.find_all("section")] == [key for key, _ in SECTIONS]
    funnel = _marks(dom, "funnel_files")
    assert list(label for _, label in funnel) == ["input", "license", "low_alpha", "kept"]  # config order
    assert funnel[("value", "license")] == 3 and funnel[("value", "kept")] == 6
    languages = _marks(dom, "languages")
    assert languages[("pulled", "Python")] == 6 and languages[("final", "C")] == 1
    assert languages[("final", "unknown")] == 0
    assert _marks(dom, "dedup_clusters") == {("exact_blob", "2 files"): 1, ("near_dup", "2 files"): 0}
    assert _marks(dom, "bits_per_byte") == {("value", "C"): 2.0, ("value", "Python"): 1.5}
    assert dom.select_one('td[data-metric="humaneval/pass@1"]')["data-value"] == "0.25"
    assert [c["data-value"] for c in dom.select('td[data-metric="source:pull requests"]')] == ["5", "1"]
    assert _marks(dom, "source_drops") == {("value", "issues: too_short"): 2, ("value", "pull requests: subsampled"): 3,
                                           ("value", "pull requests: too_long"): 1,
                                           ("value", "notebooks: near_dup"): 1, ("value", "issues: decontaminated"): 2}
    assert _marks(dom, "mixture") == {("value", "code"): 900, ("value", "issues"): 100}
    assert "optim.lr" in dom.find("section", id="lineage").get_text() and "f" * 32 in str(dom)
    # A stage that has not run yet leaves its sections saying how to make them, not a traceback.
    sparse = BeautifulSoup(render_page(PageInputs(metrics={"pull": FULL_METRICS["pull"]})), "html.parser")
    assert "dvc repro filter" in sparse.find("section", id="funnel").get_text()
    assert "dvc repro clean" in sparse.find("section", id="pii").get_text()


def test_card_lists_filters_with_thresholds_and_is_made_of_metrics_and_params_only() -> None:
    from starbuild.report.card import render_card

    params = {"source": {"kind": "local"}, "dedup": {"threshold": 0.7},
              "filter": {"rules": {"license": {"_target_": "starbuild.filters.rules.LicenseTypes", "enabled": True,
                                               "keep": ["permissive", "no_license"]},
                                   "encoded_data": {"_target_": "starbuild.filters.rules.EncodedData",
                                                    "enabled": False, "patterns": ["a|b"]}}}}
    card = render_card(FULL_METRICS, params)
    assert card == render_card(FULL_METRICS, params)
    assert "| license | LicenseTypes | keep=permissive, no_license | 3 | 200 |" in card
    assert "| encoded_data | EncodedData (off) | patterns=a\\|b | 0 | 0 |" in card
    assert "`swh:1:dir:" + "1" * 40 + "`" in card and "`threshold=0.7`" in card
    assert "| Python | 6 | 4 | 500 |" in card and "| email | 2 |" in card and "| humaneval | 1 |" in card
    assert "| Jupyter scripts | 3 | 2 |" in card and "| pull requests | 5 | 1 |" in card
    assert "| pull requests: subsampled | 3 |" in card and "| issues | 2.5 | 4 | 100 | 10.00% |" in card


def test_plot_tables_hold_the_numbers_the_page_draws() -> None:
    from starbuild.report.stage import plot_tables

    tables = plot_tables(FULL_METRICS)
    assert tables["languages"][0] == {"language": "Python", "pulled": 6, "final": 4}
    assert tables["dedup_clusters"] == [{"reason": "exact_blob", "size": 2, "clusters": 1}]
    assert tables["bits_per_byte"] == [{"language": "C", "bits_per_byte": 2.0},
                                       {"language": "Python", "bits_per_byte": 1.5}]
