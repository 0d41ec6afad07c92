"""The filter stage: its DuckDB rules against a plain-Python reference (tests/filter_reference.py), rule by rule
and in any order, on boundary cases, generated files and real files; the funnel and the rejects sample."""

from __future__ import annotations

import csv
import inspect
import itertools
import json
import os
import random
import shutil
import sysconfig
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starbuild.core import layout
from starbuild.core.config import compose
from starbuild.core.schemas import FILTER_REJECTS, RAW, UNKNOWN_LANGUAGE, SchemaMismatch
from starbuild.core.shards import list_shards, read_shard, write_shard
from starbuild.core.stage import StageError
from starbuild.filters import rules as rules_module
from starbuild.filters import stage as stage_module
from starbuild.filters import text_stats
from starbuild.filters.query import RuleSet, rules_from_config
from starbuild.filters.rules import FileNames, LongLines, LowAlpha, MaxLines, Rule
from starbuild.filters.stage import FUNNEL_PLOT, run_filter
from starbuild.shards.pipeline import task_sizes
from tests import filter_reference as reference
from tests.conftest import REPO_ROOT
from tests.factories import file_bytes, raw_row, raw_table, with_overrides, with_section, write_table


def reference_reason(row: Mapping, rules: Mapping[str, Rule]) -> str | None:
    return reference.first_reason(row, rules)


def test_every_rule_class_has_a_reference(smoke_cfg):
    classes = {cls for _, cls in inspect.getmembers(rules_module, inspect.isclass)
               if issubclass(cls, Rule) and not inspect.isabstract(cls)}
    assert classes == set(reference.REFERENCE)
    assert {type(rule) for rule in rules_from_config(smoke_cfg.filter.rules).rules.values()} <= set(reference.REFERENCE)


# --- cases ------------------------------------------------------------------------------------------

# (language, extension) pairs the tests exclude (the shipped list is empty: App. A.1 is not in the references).
EXCLUDED_PAIRS = "# test pairs\nPython\t.PYX\nMarkdown\t.mdx\n"
FILLER = "ab cd ef\n"  # letters, no encoded-data match, short lines


def b64(n: int) -> str:
    """`n` characters of the base64 class with a newline every 60, not ending in one (one match of length n)."""
    body = "".join("\n" if i % 61 == 60 else "Ab3+"[i % 4] for i in range(n))
    return body[:-1] + "Z" if body.endswith("\n") else body


def filler(n: int) -> str:
    return (FILLER * (n // len(FILLER) + 1))[:n].replace("\n", " ", 1) if n else ""


def html_page(visible: int, hidden: int) -> str:
    """A page of `visible` characters of text and `hidden` of script."""
    return "<p>" + "a" * visible + "</p><script>" + "x" * hidden + "</script>"


def varied_cases(rules: Mapping[str, Rule]) -> list[tuple]:
    """(path, language, content[, row overrides]) cases around every threshold of the rules."""
    long_lines, max_lines = rules["long_lines"], rules["too_many_lines"].max_lines
    avg, longest = int(long_lines.max_avg_line_length), long_lines.max_line_length
    exempt_max = long_lines.exempt_max_line_length
    encoded, data_lines, page = rules["encoded_data"], rules["data_format_lines"].max_lines, rules["html"]
    longest_match = encoded.max_match_length
    visible = page.min_text_chars + 10 - page.min_text_chars % 10
    at_fraction = round(visible / page.min_text_fraction)
    json_line = '"abc": "de",\n'
    return [
        ("ok.py", "Python", "def f(x):\n    return x + 1\n"),
        ("empty.py", "Python", ""),
        ("none.py", "Python", None),
        ("newlines.py", "Python", "\n\n\n"),
        ("crlf.py", "Python", "def f():\r\n    return 1\r\n"),
        ("lone_cr.py", "Python", "a = 1\rb = 2\r"),
        ("crlf_long.py", "Python", ("a" * avg + "\r\n") * 3 + "a" * avg),  # "\r" tips the average over
        ("avg_at.py", "Python", "a" * avg),
        ("avg_over.py", "Python", "a" * (avg + 1)),
        ("avg_split.py", "Python", "a" * avg + "\n" + "a" * avg),
        ("max_at.py", "Python", "a" * longest + "\n" + "\n" * (longest // avg)),
        ("max_over.py", "Python", "a" * (longest + 1) + "\n" * (longest // avg + 5)),
        ("page.html", "HTML", "<p>" + "a" * longest * 3 + "</p>"),
        ("page_at.json", "JSON", "a" * exempt_max),
        ("page_over.json", "JSON", "a" * (exempt_max + 1)),
        ("nolang.txt", None, "a" * (avg + 1)),
        ("lines_at.py", "Python", "a\n" * (max_lines - 1) + "a"),
        ("lines_over.py", "Python", "a\n" * max_lines + "a"),
        ("lines_over_empty.py", "Python", "\n" * max_lines),  # too many lines and no letters
        ("long_and_digits.py", "Python", "1" * (longest + 1)),  # too long and no letters
        ("alpha_at.py", "Python", "ab" + "1" * 6),
        ("alpha_under.py", "Python", "a" + "1" * 4),
        ("digits.py", "Python", "0123456789 + 0xFF"),
        ("digits.s", "Motorola 68K Assembly", "0123456789 + 0xFF"),
        ("wasm.wat", "WebAssembly", "(i32.const 42)"),
        ("greek.py", "Python", "λ = α + β  # ελληνικά"),
        ("cjk.md", "Markdown", "漢字とかな、한국어。"),
        ("combining.py", "Python", "e\u0301e\u0301e\u0301 1 2 3"),  # marks (Mn) are not letters
        ("emoji.py", "Python", "😀😀😀 ok"),
        ("titlecase.py", "Python", "ǅǈǋ !!!!!!"),  # Lt letters
        ("roman.s", "Motorola 68K Assembly", "ⅠⅡⅢⅣ ...."),  # Nl: numeric, not alphabetic
        ("roman_py.py", "Python", "ⅠⅡⅢⅣ ...."),
        ("superscript.s", "Motorola 68K Assembly", "²³¹ ¼½ ....."),  # No
        ("wide_lines.py", "Python", ("ü" * avg + "\n") * 4),  # code points, not bytes
        # license and language
        ("lic_non_permissive.py", "Python", "x = 1\n", {"license_type": "non_permissive"}),
        ("lic_no_license.py", "Python", "x = 1\n", {"license_type": "no_license"}),
        ("lic_null.py", "Python", "x = 1\n", {"license_type": None}),
        ("prog.f90", "Fortran", "program p\nend program p\n"),
        # excluded extensions (EXCLUDED_PAIRS)
        ("mod.pyx", "Python", "x = 1\n"),
        ("MOD.PYX", "Python", "x = 1\n"),
        ("mod.pyx.py", "Python", "x = 1\n"),
        ("page.mdx", "Markdown", "# Title\n"),
        ("page.mdx", "Python", "x = 1\n"),
        # autogenerated
        ("gen_enry.py", "Python", "x = 1\n", {"is_generated": True}),
        ("gen_line1.py", "Python", "# This file is generated by protoc. Do not edit.\nx = 1\n"),
        ("gen_line5.py", "Python", "a\nb\nc\nd\n# Auto-Generated file\n"),
        ("gen_line6.py", "Python", "a\nb\nc\nd\ne\n# autogenerated\n"),
        ("gen_words.py", "Python", "# generated by hand, automatically tested\nvalue = compute()\n"),
        ("gen_split.py", "Python", "# auto-\n# generated\n"),
        # encoded data
        ("b64_at.py", "Python", b64(longest_match) + " " + filler(longest_match)),
        ("b64_over.py", "Python", b64(longest_match + 1) + " " + filler(longest_match + 1)),
        ("b64_under.py", "Python", b64(longest_match - 1) + " " + filler(longest_match)),
        ("b64_run_63.py", "Python", b64(63) + " " + filler(10)),  # a run one short of a match
        ("b64_half.py", "Python", b64(64) + " " + filler(63)),
        ("b64_under_half.py", "Python", b64(64) + " " + filler(64)),
        ("b64_over_half.py", "Python", b64(64) + " " + filler(62)),
        ("hexdump.py", "Python", "0a 1b 2c 3d 4e 5f 6a 7b\n" * 60),
        ("hexarray.c", "C", "int a[] = {" + "0x1f," * 40 + "};\n" + filler(400)),
        ("escapes.py", "Python", ("'" + "\\u00e9" * 10 + "'\n") * 20),
        # data formats
        ("data_under.json", "JSON", json_line * (data_lines - 2) + json_line.strip()),
        ("data_at.json", "JSON", json_line * (data_lines - 1) + json_line.strip()),
        ("data_over.json", "JSON", json_line * data_lines + json_line.strip()),
        ("data_over.yaml", "YAML", "abc: de\n" * (data_lines + 1)),
        ("data_over.py", "Python", "abc = 1\n" * (data_lines + 1)),
        # JSON and YAML are outside the smol language list, so the language rule drops them first.
        ("at/README.txt", "Text", "abc de\n" * (data_lines - 1) + "abc de"),
        ("over/README.txt", "Text", "abc de\n" * data_lines + "abc de"),
        # HTML
        ("text_at.html", "HTML", html_page(page.min_text_chars, 0)),
        ("text_under.html", "HTML", html_page(page.min_text_chars - 1, 0)),
        ("text_over.html", "HTML", html_page(page.min_text_chars + 1, 0)),
        ("fraction_over.html", "HTML", html_page(visible, at_fraction - len(html_page(visible, 0)) - 1)),
        ("fraction_at.html", "HTML", html_page(visible, at_fraction - len(html_page(visible, 0)))),
        ("fraction_under.html", "HTML", html_page(visible, at_fraction - len(html_page(visible, 0)) + 1)),
        ("script_only.html", "HTML", "<script>" + "var a = 1;\n" * 50 + "</script>"),
        ("invalid.html", "HTML", "<html><body><p>unclosed <div <<>> &bogus; </b></i><![CDATA[x]]><!DOCTYPE"),
        # Text file names
        ("README.txt", "Text", "Some notes about the project.\n"),
        ("docs/notes", "Text", "Some notes about the project.\n"),
        ("requirements-dev.txt", "Text", "pytest\nruff\n"),
        ("CMakeLists.txt", "Text", "project(x)\n"),
        ("Todo.TXT", "Text", "fix it\n"),
        ("random.txt", "Text", "Some notes about the project.\n"),
        (".readme", "Text", "Some notes about the project.\n"),
        ("README.md.txt", "Text", "Some notes about the project.\n"),
    ]


def case_rows(cases) -> list[dict]:
    """Raw rows for (path, language, content[, overrides]) cases, sorted by path then language."""
    rows = []
    for path, language, content, *extra in sorted(cases, key=lambda case: (case[0], case[1] or "")):
        row = raw_row("org/repo", path, content or "", language=language, **(extra[0] if extra else {}))
        row["content"] = content
        rows.append(row)
    return rows


def conf_cfg(smoke_cfg, tmp_path):
    """The smoke config with EXCLUDED_PAIRS as the excluded extensions."""
    tsv = tmp_path / "excluded.tsv"
    tsv.write_text(EXCLUDED_PAIRS, encoding="utf-8")
    return with_overrides(smoke_cfg, filter={"rules": {"excluded_extensions": {"path": str(tsv)}}})


def small_cfg(smoke_cfg, tmp_path):
    """conf_cfg with thresholds small enough to hit every boundary cheaply."""
    return with_overrides(conf_cfg(smoke_cfg, tmp_path), filter={"rules": {
        "too_many_lines": {"max_lines": 50},
        "long_lines": {"max_avg_line_length": 10, "max_line_length": 40, "exempt_max_line_length": 200},
        "encoded_data": {"max_match_length": 100, "max_matched_fraction": 0.3},
        "data_format_lines": {"max_lines": 20},
        "html": {"min_text_chars": 30, "min_text_fraction": 0.25},
    }})


def both_cfgs(smoke_cfg, tmp_path):
    return [conf_cfg(smoke_cfg, tmp_path), small_cfg(smoke_cfg, tmp_path)]


POOL = ["a", "Z", "7", " ", "_", "(", "\r", "\n", "é", "ж", "中", "😀", "\u0301", "٣", "Ⅻ", "0x", "\\x", "\\u",
        "f", "+", "/", "=", ",", "<p>", "</p>", "<script>", "</script>", "auto-generated", "AutoGenerated"]
LANGUAGES = ["Python", "JSON", "Markdown", "WebAssembly", "Motorola 68K Assembly", "HTML", "Text", "YAML",
             "Fortran", None]
PATHS = ["a.py", "README", "readme.TXT", "notes.md", "x/requirements.txt", "m.pyx", "p.mdx", ".todo", "a.b.c"]


def random_text(rng: random.Random) -> str:
    """A file of random lines drawn from letters, digits, punctuation, unicode, markup and encoded-data bits."""
    lines = []
    for _ in range(rng.choice([0, 1, 2, 5, 30])):
        width = rng.choice([0, 3, 40, 99, 100, 101, 999, 1000, 1001, 2500])
        weights = [rng.random() for _ in POOL]
        lines.append("".join(rng.choices(POOL, weights=weights, k=width // 2)))
    return "\n".join(lines)


def random_rows(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    return [raw_row("r", f"{i}/{rng.choice(PATHS)}", random_text(rng), language=rng.choice(LANGUAGES),
                    is_generated=rng.random() < 0.1, is_vendor=rng.random() < 0.1,
                    license_type=rng.choice(["permissive", "no_license", "non_permissive", None]))
            for i in range(n)]


def real_rows() -> list[dict]:
    """The files of the packages the embedded corpus pulls (real code), with go-enry's attributes."""
    import numpy
    import omegaconf
    import torch

    from starbuild.swh.languages import classify

    roots = [Path(omegaconf.__file__).parent, Path(numpy.__file__).parent / "_core/include/numpy",
             Path(torch.__file__).parent / "utils/model_dump"]
    rows = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                data, rel = path.read_bytes(), str(path.relative_to(root))
                kind = classify(rel, data)
                rows.append(raw_row(root.name, rel, data.decode("utf-8", "replace"), language=kind.language,
                                    is_generated=kind.is_generated, is_vendor=kind.is_vendor))
    return rows


def sql_verdicts(rules: RuleSet, rows: list[dict]) -> list[dict[str, bool]]:
    found = rules.verdicts(raw_table(rows))
    return [{reason: bool(found[reason][i]) for reason in rules.reasons} for i in range(len(rows))]


def sql_reasons(rules: RuleSet, rows: list[dict]) -> list[str | None]:
    return rules.drop_reasons(raw_table(rows))


# --- the rules against the reference ----------------------------------------------------------------


@pytest.mark.parametrize("shrink", [False, True], ids=["conf", "small"])
def test_stage_agrees_with_reference(tmp_path, make_context, smoke_cfg, shrink):
    cfg = (small_cfg if shrink else conf_cfg)(smoke_cfg, tmp_path)
    rules = rules_from_config(cfg.filter.rules)
    rows = case_rows(varied_cases(rules.rules))
    write_table(tmp_path / layout.RAW, [rows[:10], rows[10:10], rows[10:]])  # includes an empty shard

    run_filter(make_context("filter", cfg))

    expected = [reference_reason(r, rules.rules) for r in rows]
    assert set(expected) == {None, *rules.reasons}, "the cases must exercise every rule"
    out = list_shards(tmp_path / layout.FILTERED)
    assert [p.name for p in out] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    kept = [row for shard in out for row in read_shard(shard).to_pylist()]
    assert [r["path"] for r in kept] == [r["path"] for r, why in zip(rows, expected, strict=True) if why is None]
    assert read_shard(out[0]).schema.equals(RAW)

    metrics = json.loads((tmp_path / "metrics/filter.json").read_text())
    assert metrics["input_files"] == len(rows)
    assert metrics["kept_files"] == len(kept)
    assert metrics["input_bytes"] == sum(r["length_bytes"] for r in rows)
    assert metrics["kept_bytes"] == sum(r["length_bytes"] for r in kept)
    first = {reason: [r for r, why in zip(rows, expected, strict=True) if why == reason] for reason in rules.reasons}
    assert metrics["dropped_first"] == {reason: {"files": len(rs), "bytes": sum(r["length_bytes"] for r in rs)}
                                        for reason, rs in first.items()}


def test_sql_matches_reference_row_by_row(smoke_cfg, tmp_path):
    rows = random_rows(7, 400)
    for cfg in both_cfgs(smoke_cfg, tmp_path):
        rules = rules_from_config(cfg.filter.rules)
        assert sql_verdicts(rules, rows) == [reference.verdicts(r, rules.rules) for r in rows]
        expected = [reference_reason(r, rules.rules) for r in rows]
        assert sql_reasons(rules, rows) == expected
        assert len(set(expected)) >= 6


def test_real_files_match_reference(smoke_cfg, tmp_path):
    rows = real_rows()
    assert len(rows) > 50 and {"Python", "C", "JavaScript", "HTML"} <= {r["language"] for r in rows}
    for cfg in both_cfgs(smoke_cfg, tmp_path):
        rules = rules_from_config(cfg.filter.rules)
        assert sql_verdicts(rules, rows) == [reference.verdicts(r, rules.rules) for r in rows]


TEXT = st.lists(st.sampled_from(POOL), max_size=300).map("".join) | st.text(max_size=200)
ROW = st.builds(
    lambda path, language, content, generated, vendor, license_type: raw_row(
        "r", path, content, language=language, is_generated=generated, is_vendor=vendor, license_type=license_type),
    st.sampled_from(PATHS), st.sampled_from(LANGUAGES), TEXT, st.booleans(), st.booleans(),
    st.sampled_from(["permissive", "no_license", "non_permissive", None]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=40))
def test_generated_files_match_reference(smoke_cfg, tmp_path, rows):
    for cfg in both_cfgs(smoke_cfg, tmp_path):
        rules = rules_from_config(cfg.filter.rules)
        assert sql_verdicts(rules, rows) == [reference.verdicts(r, rules.rules) for r in rows]


def test_each_rule_alone_matches_its_reference(smoke_cfg, tmp_path):
    for cfg in both_cfgs(smoke_cfg, tmp_path):
        conf = rules_from_config(cfg.filter.rules)
        rows = random_rows(5, 300) + case_rows(varied_cases(conf.rules))
        for reason, rule in conf.rules.items():
            alone = {reason: rule}
            expected = [reference_reason(r, alone) for r in rows]
            assert sql_reasons(RuleSet(alone), rows) == expected, reason
            assert expected.count(reason) > 0 and expected.count(None) > 0, reason


def test_stack_v1_and_none_presets(tmp_path, make_context, smoke_cfg):
    rows = case_rows(varied_cases(rules_from_config(small_cfg(smoke_cfg, tmp_path).filter.rules).rules))
    rows += case_rows([("decl.xml", "XML", '<?xml version="1.0"?>\n<a>text here</a>\n'),
                       ("late.xml", "XML", " " * 100 + '<?xml version="1.0"?><a>text here</a>\n')])
    write_table(tmp_path / layout.RAW, [rows])
    for preset in ("stack_v1", "none"):
        cfg = compose(["experiment=smoke", f"filter={preset}"], conf_dir=REPO_ROOT / "conf")
        rules = rules_from_config(cfg.filter.rules)
        run_filter(make_context("filter", cfg))
        expected = [reference_reason(r, rules.rules) for r in rows]
        metrics = json.loads((tmp_path / "metrics/filter.json").read_text())
        assert metrics["kept_files"] == expected.count(None)
        assert {k: v["files"] for k, v in metrics["dropped_first"].items()} == {
            reason: expected.count(reason) for reason in rules.reasons}
    assert metrics["kept_files"] == len(rows)  # none keeps everything
    v1 = rules_from_config(compose(["experiment=smoke", "filter=stack_v1"], conf_dir=REPO_ROOT / "conf").filter.rules)
    assert "xml_declaration" in v1.reasons and v1.rules["license"].keep == ("permissive",)


def test_removing_and_reordering_rules_changes_reasons_as_the_reference_says(tmp_path, make_context, smoke_cfg):
    cfg = small_cfg(smoke_cfg, tmp_path)
    rows = case_rows(varied_cases(rules_from_config(cfg.filter.rules).rules)) + random_rows(9, 200)
    rows = sorted(rows, key=lambda r: r["path"])
    write_table(tmp_path / layout.RAW, [rows])
    conf = rules_from_config(cfg.filter.rules).rules
    by_default = [reference_reason(r, conf) for r in rows]

    # Removed the way `dvc exp run -S '~filter.rules.low_alpha'` does (a Hydra deletion override), and
    # switched off the way `-S filter.rules.html.enabled=false` does.
    overrides = ["experiment=smoke", "~filter.rules.low_alpha", "filter.rules.html.enabled=false"]
    removed = small_cfg(compose(overrides, conf_dir=REPO_ROOT / "conf"), tmp_path)
    run_filter(make_context("filter", removed))
    without = rules_from_config(removed.filter.rules).rules
    assert "low_alpha" not in without and "html" not in without and "long_lines" in without
    expected = [reference_reason(r, without) for r in rows]
    metrics = json.loads((tmp_path / "metrics/filter.json").read_text())
    assert {k: v["files"] for k, v in metrics["dropped_first"].items()} == {
        reason: expected.count(reason) for reason in without}
    assert metrics["kept_files"] == expected.count(None) > by_default.count(None)

    # Reordered, plus a second rule of a class already used, under its own reason and thresholds.
    conf_rules = cfg.filter.rules
    cfg2 = with_section(cfg, "filter.rules", {
        "low_alpha": conf_rules.low_alpha,
        "long_lines": conf_rules.long_lines,
        "very_long_files": {"_target_": "starbuild.filters.rules.MaxLines", "max_lines": 20},
        "too_many_lines": conf_rules.too_many_lines,
    })
    order = ["low_alpha", "long_lines", "very_long_files", "too_many_lines"]
    rules = rules_from_config(cfg2.filter.rules)
    assert rules.reasons == tuple(order)
    expected = [reference_reason(r, rules.rules) for r in rows]
    assert expected != by_default and "very_long_files" in expected
    assert sql_reasons(rules, rows) == expected
    run_filter(make_context("filter", cfg2))
    metrics = json.loads((tmp_path / "metrics/filter.json").read_text())
    assert {k: v["files"] for k, v in metrics["dropped_first"].items()} == {
        reason: expected.count(reason) for reason in order}


def test_vendor_rule_is_off_by_default_and_switched_on_from_the_command_line(tmp_path, make_context):
    code = "value = compute(x)\n"
    rows = case_rows([("vendor/lib.py", "Python", code, {"is_vendor": True}), ("a.py", "Python", code)])
    write_table(tmp_path / layout.RAW, [rows])
    for enabled, kept in (("false", 2), ("true", 1)):
        cfg = compose(["experiment=smoke", f"filter.rules.vendor.enabled={enabled}"], conf_dir=REPO_ROOT / "conf")
        run_filter(make_context("filter", cfg))
        metrics = json.loads((tmp_path / "metrics/filter.json").read_text())
        assert metrics["kept_files"] == kept
        assert ("vendor" in metrics["dropped"]) == (enabled == "true")


def test_funnel_counts_every_failing_rule_per_language_and_the_plot_walks_the_rules(tmp_path, make_context, smoke_cfg):
    cfg = small_cfg(smoke_cfg, tmp_path)
    rules = rules_from_config(cfg.filter.rules)
    rows = sorted(case_rows(varied_cases(rules.rules)) + random_rows(11, 150), key=lambda r: r["path"])
    write_table(tmp_path / layout.RAW, [rows[:70], rows[70:]])
    run_filter(make_context("filter", cfg))
    metrics = json.loads((tmp_path / "metrics/filter.json").read_text())

    def expected_counts(group: list[dict]) -> dict:
        verdicts = [reference.verdicts(r, rules.rules) for r in group]
        firsts = [reference_reason(r, rules.rules) for r in group]

        def files_bytes(members: list[dict]) -> dict:
            return {"files": len(members), "bytes": sum(r["length_bytes"] for r in members)}

        kept = [r for r, why in zip(group, firsts, strict=True) if why is None]
        return {
            "input_files": len(group), "input_bytes": sum(r["length_bytes"] for r in group),
            "kept_files": len(kept), "kept_bytes": sum(r["length_bytes"] for r in kept),
            "dropped": {reason: files_bytes([r for r, v in zip(group, verdicts, strict=True) if v[reason]])
                        for reason in rules.reasons},
            "dropped_first": {reason: files_bytes([r for r, why in zip(group, firsts, strict=True) if why == reason])
                              for reason in rules.reasons},
        }

    languages = sorted({r["language"] or UNKNOWN_LANGUAGE for r in rows})
    assert metrics == {**expected_counts(rows), "languages": {
        language: expected_counts([r for r in rows if (r["language"] or UNKNOWN_LANGUAGE) == language])
        for language in languages}}
    # Several rules fail some files: the inclusive counts exceed the exclusive ones.
    assert sum(v["files"] for v in metrics["dropped"].values()) > sum(
        v["files"] for v in metrics["dropped_first"].values())

    with (tmp_path / FUNNEL_PLOT).open(newline="") as f:
        funnel = list(csv.DictReader(f))
    assert [row["rule"] for row in funnel] == ["input", *rules.reasons]
    assert int(funnel[0]["files"]) == len(rows) and int(funnel[-1]["files"]) == metrics["kept_files"]
    assert int(funnel[-1]["bytes"]) == metrics["kept_bytes"]
    for before, after in itertools.pairwise(funnel):
        dropped = metrics["dropped_first"][after["rule"]]
        assert int(before["files"]) - int(after["files"]) == int(after["dropped_files"]) == dropped["files"]
        assert int(before["bytes"]) - int(after["bytes"]) == int(after["dropped_bytes"]) == dropped["bytes"]


def test_rejects_sample_is_per_rule_and_independent_of_shards_and_workers(tmp_path, make_context, smoke_cfg):
    cfg = with_overrides(small_cfg(smoke_cfg, tmp_path), filter={"keep_rejects": 3})
    rules = rules_from_config(cfg.filter.rules)
    rows = sorted(case_rows(varied_cases(rules.rules)) + random_rows(13, 150), key=lambda r: r["path"])

    def rejects(shards: list[list[dict]], workers: int) -> list[dict]:
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
        write_table(tmp_path / layout.RAW, shards)
        run_filter(make_context("filter", with_overrides(cfg, executor={"workers": workers})))
        (only,) = list_shards(tmp_path / layout.FILTER_REJECTS)
        table = read_shard(only)
        assert table.schema.equals(FILTER_REJECTS)
        return table.to_pylist()

    sample = rejects([rows], 2)
    assert rejects([rows[:40], rows[40:90], rows[90:]], 1) == sample
    verdicts = [reference.verdicts(r, rules.rules) for r in rows]
    for reason in rules.reasons:
        failing = {(r["repo_name"], r["path"], r["language"]) for r, v in zip(rows, verdicts, strict=True) if v[reason]}
        chosen = [(r["repo_name"], r["path"], r["language"]) for r in sample if r["reason"] == reason]
        assert len(chosen) == min(3, len(failing)) and set(chosen) <= failing, reason
    assert [r["reason"] for r in sample] == sorted((r["reason"] for r in sample), key=rules.reasons.index)

    # The default keeps none, and the out still exists (an empty table).
    shutil.rmtree(tmp_path / "data")
    write_table(tmp_path / layout.RAW, [rows])
    run_filter(make_context("filter", small_cfg(smoke_cfg, tmp_path)))
    assert read_shard(list_shards(tmp_path / layout.FILTER_REJECTS)[0]).num_rows == 0


def test_rules_sharing_a_feature_compute_it_once_and_must_agree():
    a = LowAlpha(min_alpha_fraction=0.25, alnum_languages=["WebAssembly"])
    b = LowAlpha(min_alpha_fraction=0.5, alnum_languages=("WebAssembly",))
    shared = RuleSet({"low_alpha": a, "very_low_alpha": b, "long": LongLines(10, 20, [], 30), "lines": MaxLines(3)})
    assert [f.name for f in shared.features].count("letter_chars") == 1
    assert [f.name for f in shared.features].count("n_lines") == 1
    # Line and letter counts come from one pass over the text, not one a feature.
    assert len({f.native.scan for f in shared.natives}) == 1
    with pytest.raises(ValueError, match="letter_chars"):
        RuleSet({"low_alpha": a, "other": LowAlpha(min_alpha_fraction=0.5, alnum_languages=["Python"])})


def assigned_code_points() -> list[str]:
    """Every code point Python's Unicode database assigns (no surrogates)."""
    return [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and unicodedata.category(chr(cp)) != "Cn"]


def test_letter_classes_match_python_on_all_assigned_code_points():
    chars = assigned_code_points()
    chunks = ["".join(chars[i : i + 4096]) for i in range(0, len(chars), 4096)]
    rows = [raw_row("r", f"{i}a", c, language="Python") for i, c in enumerate(chunks)]
    rows += [raw_row("r", f"{i}n", c, language="WebAssembly") for i, c in enumerate(chunks)]
    rules = RuleSet({"low_alpha": LowAlpha(min_alpha_fraction=0.25, alnum_languages=["WebAssembly"])})
    features = rules.measure(raw_table(rows)).to_pylist()
    for row, feature in zip(rows, features, strict=True):
        text = row["content"]
        test = str.isalnum if row["language"] == "WebAssembly" else str.isalpha
        assert feature["letter_chars"] == sum(map(test, text)), row["path"]
        assert feature["n_chars"] == len(text)


def python_text_stats(text: str) -> tuple[int, ...]:
    lines = text.split("\n")
    return len(text), len(lines), max(map(len, lines)), sum(map(str.isalpha, text)), sum(map(str.isalnum, text))


@pytest.mark.parametrize("skip", [0, 1, 3, 7])
def test_text_stats_word_at_a_time_equals_python_at_every_alignment(skip):
    # ASCII is counted eight aligned bytes at a time: texts of every length start and end at every offset
    # of a word, with newlines, the bytes just around the letter and digit ranges and non-ASCII between.
    rng = random.Random(skip)
    edges = "\n\r\t /09:@AZ[`az{\x7f\x00"
    pools = [edges + "bQ7\n", "abcdefgh \n0123456789ABZ", edges + "é漢😀\u0663\u00aa\u2028"]
    texts = ["".join(rng.choice(rng.choice(pools)) for _ in range(rng.choice([0, 1, 7, 8, 9, 16, 17, 63, 300])))
             for _ in range(1500)]
    texts += ["".join(map(chr, range(128))) * 3, "\n" * 17, "x" * 1000 + "\n"]
    column = pa.chunked_array([pa.array(texts, pa.large_string()).slice(skip)])  # data no longer starts a text
    stats = text_stats.text_stats(column)
    got = list(zip(*(stats[name].to_pylist() for name in text_stats.COLUMNS), strict=True))
    assert got == [python_text_stats(text) for text in texts[skip:]]
    unaligned = np.frombuffer(b"-" + "".join(texts).encode(), np.uint8)[1:]
    copied, words = text_stats._as_words(unaligned)
    assert unaligned.ctypes.data % 8 and copied.ctypes.data % 8 == 0 and np.array_equal(copied, unaligned)
    assert words.size == unaligned.size // 8


def test_deterministic_and_worker_independent(tmp_path, make_context, smoke_cfg):
    rng = random.Random(3)
    rows = sorted((raw_row("r", f"f{i:03d}", random_text(rng)) for i in range(120)), key=lambda r: r["path"])
    write_table(tmp_path / layout.RAW, [rows[:50], rows[50:]])

    def snapshot() -> dict[str, bytes]:
        return file_bytes(tmp_path, layout.FILTERED, layout.metrics_file("filter"))

    run_filter(make_context("filter"))
    first = snapshot()
    run_filter(make_context("filter"))
    assert snapshot() == first
    run_filter(make_context("filter", with_overrides(smoke_cfg, executor={"workers": 1})))
    assert snapshot() == first
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".tmp")]


def test_shards_filtered_in_groups_equal_shards_filtered_one_by_one(tmp_path, make_context, smoke_cfg, monkeypatch):
    cfg = with_overrides(small_cfg(smoke_cfg, tmp_path), filter={"keep_rejects": 2}, executor={"workers": 1})
    rows = sorted(case_rows(varied_cases(rules_from_config(cfg.filter.rules).rules)) + random_rows(7, 60),
                  key=lambda r: r["path"])
    write_table(tmp_path / layout.RAW, [rows[i:i + 5] for i in range(0, len(rows), 5)])
    raw = [path.stat().st_size for path in list_shards(tmp_path / layout.RAW)]
    assert max(task_sizes(raw, 1, stage_module.SHARDS_PER_QUERY, stage_module.QUERY_FILE_BYTES)) > 1

    def snapshot() -> dict[str, bytes]:
        run_filter(make_context("filter", cfg))
        return file_bytes(tmp_path, layout.FILTERED, layout.FILTER_REJECTS, layout.metrics_file("filter"))

    grouped = snapshot()
    monkeypatch.setattr(stage_module, "SHARDS_PER_QUERY", 1)
    assert snapshot() == grouped


# --- bad configuration and bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("filter.rules.low_alpha.min_alpha_fraction=1.5",
         r"filter\.rules\.low_alpha\.min_alpha_fraction must be within \[0, 1\], got 1\.5"),
        ("filter.rules.too_many_lines.max_lines=0", r"filter\.rules\.too_many_lines\.max_lines must be >= 1"),
        ("filter.rules.too_many_lines.max_lines=many", r"filter\.rules\.too_many_lines\.max_lines must be an integer"),
        ("filter.rules.long_lines.exempt_languages=JSON",
         r"filter\.rules\.long_lines\.exempt_languages must be a list"),
        ("+filter.rules.low_alpha.min_alpha=0.3",
         r"filter\.rules\.low_alpha: .*unexpected keyword argument 'min_alpha'"),
        ("~filter.rules.low_alpha.alnum_languages", r"filter\.rules\.low_alpha: .*missing .*'alnum_languages'"),
        ("filter.rules.low_alpha._target_=starbuild.filters.rules.Nope",
         r"filter\.rules\.low_alpha\._target_: cannot import 'starbuild\.filters\.rules\.Nope'"),
        ("filter.rules.low_alpha._target_=collections.OrderedDict",
         r"filter\.rules\.low_alpha\._target_: 'collections\.OrderedDict' is not a rule class"),
        ("~filter.rules.low_alpha._target_", r"filter\.rules\.low_alpha needs a `_target_`"),
        ("+filter.rules.bad-name={_target_: starbuild.filters.rules.MaxLines, max_lines: 3}",
         r"filter\.rules\.bad-name: a drop reason must be a name"),
        ("filter.keep_rejects=-1", r"filter\.keep_rejects must be an integer >= 0, got -1"),
        ("filter.rules.html.enabled=maybe", r"filter\.rules\.html\.enabled must be true or false, got 'maybe'"),
        ("filter.rules.encoded_data.patterns=['(unclosed']",
         r"filter\.rules\.encoded_data\.patterns has '\(unclosed', which is not an RE2 pattern"),
        ("filter.rules.excluded_extensions.path=conf/nope.tsv",
         r"filter\.rules\.excluded_extensions\.path conf/nope\.tsv does not exist"),
        ("filter.rules.language.keep=some", r"filter\.rules\.language\.keep must be a list of language names"),
        ("filter.rules.autogenerated.use_enry=1", r"filter\.rules\.autogenerated\.use_enry must be true or false"),
        ("filter.rules.autogenerated.phrases=[generated,'']",
         r"filter\.rules\.autogenerated\.phrases has an empty phrase, which every file contains"),
    ],
)
def test_bad_rule_config_fails_in_one_line_naming_the_key(tmp_path, make_context, override, message):
    write_table(tmp_path / layout.RAW, [[raw_row("r", "a.py", "x = 1\n")]])
    cfg = compose(["experiment=smoke", override], conf_dir=REPO_ROOT / "conf")
    with pytest.raises(StageError, match=message) as caught:
        run_filter(make_context("filter", cfg))
    assert "\n" not in str(caught.value)
    assert str(caught.value).endswith("fix conf/filter/")
    assert not (tmp_path / layout.FILTERED).exists()


def test_bad_excluded_extensions_line_names_file_and_line(tmp_path, make_context, smoke_cfg):
    write_table(tmp_path / layout.RAW, [[raw_row("r", "a.py", "x = 1\n")]])
    (tmp_path / "pairs.tsv").write_text("# ok\nPython\t.pyx\nPython .pyi\n", encoding="utf-8")
    cfg = with_overrides(smoke_cfg, filter={"rules": {"excluded_extensions": {"path": "pairs.tsv"}}})
    with pytest.raises(StageError, match=r"excluded_extensions\.path pairs\.tsv:3: expected 'language<TAB>\.ext'"):
        run_filter(make_context("filter", cfg))


def test_hard_files_are_judged_like_the_reference(tmp_path, make_context, smoke_cfg):
    """A single 5 MB line (code, markup, encoded data), newline-only, lone-CR and non-BMP files, broken HTML."""
    cases = [
        ("huge.py", "Python", "a" * 5_000_000),
        ("huge.html", "HTML", "<p>" + "word " * 1_000_000 + "</p>"),
        ("huge_b64.md", "Markdown", "Ab3+" * 1_250_000),
        ("newlines.txt", "Text", "\n" * 1000),
        ("cr.py", "Python", "def f():\r    return 'x'\r" * 50),
        ("astral.py", "Python", "𝒳 = '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 😀'\n" * 20),
        ("broken.html", "HTML", "<div><p>text <b>bold</i> <!-- open comment <script>var x = '</scr' + 'ipt>';"),
        ("tags.html", "HTML", "<" * 500 + "p>" + "text " * 100),
    ]
    rows = case_rows(cases)
    write_table(tmp_path / layout.RAW, [rows])
    run_filter(make_context("filter"))
    rules = rules_from_config(smoke_cfg.filter.rules)
    expected = [reference_reason(r, rules.rules) for r in rows]
    kept = [r["path"] for r in read_shard(list_shards(tmp_path / layout.FILTERED)[0]).to_pylist()]
    assert kept == [r["path"] for r, why in zip(rows, expected, strict=True) if why is None]
    assert expected[[r["path"] for r in rows].index("huge.py")] == "long_lines"


def test_bad_input_fails_clearly(tmp_path, make_context):
    table = raw_table([raw_row("r", "a.py", "x")]).drop_columns(["language"])
    (tmp_path / layout.RAW).mkdir(parents=True)
    write_shard(table, tmp_path / layout.RAW / "part-00000.parquet")
    with pytest.raises(SchemaMismatch, match="language"):
        run_filter(make_context("filter"))
    assert not (tmp_path / layout.FILTERED).exists()


def test_parallel_workers_share_the_cores_among_their_duckdb_threads(monkeypatch):
    from starbuild.executors.local import LocalExecutor
    from starbuild.executors.ray import RayExecutor

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert LocalExecutor(2).threads_per_task(tasks=10) == 4
    assert LocalExecutor(2).threads_per_task(tasks=1) == 8  # one task runs alone, in this process
    assert LocalExecutor(16).threads_per_task(tasks=40) == 1
    assert RayExecutor().threads_per_task(tasks=10) == 1  # a Ray task is given one CPU
    # How many tasks run at once, which sizes the filter's groups of shards; unknown on a running cluster.
    assert LocalExecutor(3).parallel_tasks() == 3
    assert RayExecutor(num_cpus=6).parallel_tasks() == 6 and RayExecutor().parallel_tasks() == 8
    assert RayExecutor(address="auto").parallel_tasks() is None


# Pieces that make near-misses of The Stack v2's encoded-data patterns: hex bytes with and without 0x/\x and
# commas, \u escapes, base64 runs that end a few bytes short, words around them, non-ASCII and whitespace.
ENCODED_PIECES = ["0x", "\\x", "\\u", "ab", "0F", "7", "123", "deadbeef", ",", ", ", " ", "  ", "\n", "\t", "\r", "\f",
                  "\v", "g", "_", "x", "é", "=", "+", "/", "==\n", "A" * 20, "Zm9v" * 7, "\\u00e9", "0x1f,", "\\x0a"]


def encoded_text(rng: random.Random) -> str:
    """A text of runs of ENCODED_PIECES, some repeated enough to match, some a little too few times."""
    parts = []
    for _ in range(rng.randint(0, 40)):
        piece = rng.choice(ENCODED_PIECES)
        parts.append(piece * rng.choice([1, 1, 2, 7, 8, 9, 16]) if rng.random() < 0.3 else piece)
    return "".join(parts)


def test_encoded_data_prefilter_finds_every_match_re2_and_python_find():
    """The compiled runs in front of RE2 (filters/encoded.py) leave out only files without a match: the longest
    and summed match lengths equal RE2's run on every file and Python's `re` (the reference)."""
    from starbuild.filters.encoded import KNOWN_RUNS, EncodedScan

    patterns = tuple(KNOWN_RUNS)
    rng = random.Random(11)
    # The last texts hold many runs each, matching and not, far apart and back to back.
    texts = [encoded_text(rng) for _ in range(4000)] + [None, "", " ; ".join(["0x1f," * 9, "ab cd"] * 40),
                                                          "g".join(["\\u00e9" * 8] * 30)]
    content = raw_table([raw_row("r", f"{i}", t or "") for i, t in enumerate(texts)]).column("content")
    fast = EncodedScan(patterns)(content)
    # The same patterns in a group are not KNOWN_RUNS' keys, so RE2 runs on every file.
    plain = EncodedScan(tuple(f"(?:{p})" for p in patterns))(content)
    assert not set(plain) ^ set(fast)
    for name in fast:
        assert fast[name].to_pylist() == plain[name].to_pylist(), name
    regexes = [reference.python_pattern(p) for p in patterns]
    matched = 0
    for i, text in enumerate(texts):
        lengths = [len(m.group()) for regex in regexes for m in regex.finditer(text or "")]
        assert fast["longest_match"][i].as_py() == max(lengths, default=0), repr(text)
        assert fast["matched_chars"][i].as_py() == sum(lengths), repr(text)
        matched += bool(lengths)
    assert 400 < matched < 3600  # both kinds of text are common, so the comparison is not vacuous


# Pieces of tag soup for the HTML counter: every tag whose strings BeautifulSoup treats differently (hidden,
# whitespace-preserving, its own string class, empty elements), comments, declarations, CDATA, entities,
# stray brackets, whitespace and non-ASCII text.
HTML_PIECES = ["<p>", "</p>", "<div>", "</div>", "<pre>", "</pre>", "<textarea>", "</textarea>", "<template>",
               "</template>", "<rt>", "</rt>", "<rp>", "</rp>", "<script>", "</script>", "<style>", "</style>",
               "<br>", "</br>", "<br/>", "<img src=x>", "<div/>", "<script/>", "<P>", "</DIV>", "</html>", "<b", ">",
               "<", "</", "<!-- c -->", "<!--", "-->", "<![CDATA[x y]]>", "<![CDATA[]]>", "<!DOCTYPE html>", "<!x>",
               "<?php 1 ?>", "&amp;", "&bogus;", "&#128;", "&#x110000;", "&nbsp", "&lt", "text", "a b", " ", "\n",
               " \t\r\f", "é", "😀", "<a href='x' a=1 a=2>", "</a>", "<svg><style>", "</svg>"]


def test_html_counter_equals_beautifulsoup_on_tag_soup_and_real_pages():
    """filters/html.py counts without building the tree; on generated tag soup and on the markup files of this
    environment its count equals BeautifulSoup's, page by page."""
    from starbuild.filters.html import visible_chars

    rng = random.Random(5)
    pages = ["", " ", "\n", "<pre> </pre>", "<template>x</template>y"]
    pages += ["".join(rng.choice(HTML_PIECES) for _ in range(rng.randint(1, 60))) for _ in range(2000)]
    roots = [Path(pytest.__file__).parents[1], Path(sysconfig.get_paths()["stdlib"])]
    # Markdown and JavaScript hold markup too, and there are few HTML files among the packages.
    suffixes = (".html", ".htm", ".xml", ".xsl", ".svg", ".md", ".js")
    found = (Path(folder, name) for root in roots for folder, _, names in os.walk(root) for name in names
             if name.endswith(suffixes))
    real = sorted(p for p in found if p.is_file() and p.stat().st_size < 200_000)
    pages += [p.read_text(encoding="utf-8", errors="replace") for p in real[::max(1, len(real) // 100)]]
    counts = [visible_chars(page) for page in pages]
    assert counts == [reference.beautifulsoup_visible_chars(page) for page in pages]
    assert len(real) >= 50 and len(set(counts)) > 50


def test_file_name_stem_and_extension_are_cut_as_os_path_splitext_cuts():
    """The path features the name rules read, from DuckDB string functions: a name's leading dots never start
    an extension, the last dot after them does; lengths are code points."""
    import posixpath

    names = ["", ".", "..", "...", ".bashrc", "..a", "a.", ".a.", "..a.b", "a.b.c", "README", "readme.md", "é.txt",
             "e\u0301.tx\u0301t", "😀.py", "a..b", "CMakeLists.txt", "x.tar.gz", ". .", "a b.c d"]
    paths = [*names, *(f"dir.d/{n}" for n in names), "dir/", "a/b.c/", "/abs/x.y", "", None]
    rules = RuleSet({"text_names": FileNames(languages=("Text",), stems=("readme",), name_contains=("req",))})
    rows = [raw_row("r", "x", "text", language="Text") for _ in paths]
    for row, path in zip(rows, paths, strict=True):
        row["path"] = path
    measured = rules.measure(raw_table(rows)).to_pylist()
    for path, got in zip(paths, measured, strict=True):
        name = posixpath.basename(path or "")
        stem, extension = os.path.splitext(name)
        assert (got["file_name"], got["file_stem"], got["file_extension"]) == (name, stem, extension), path


def test_phrases_are_found_in_each_head_as_re2_finds_them_in_that_head_alone():
    """HeadMatches searches all the heads at once; its verdicts equal RE2's search of each file's first lines on
    its own: no match runs from one file into the next, a match past the first lines does not count, and RE2's
    case folding (the long s, the Kelvin sign) is kept."""
    import re2

    from starbuild.filters.rules import literal_pattern
    from starbuild.filters.text_stats import HEAD_MATCH, HeadMatches

    phrases = ["auto-generated", "do not edit", "generated by", "this is generated", "keep out"]
    pattern, lines = literal_pattern(phrases), 3
    pieces = ["auto-", "generated", " by", "Auto-Generated", "do not ", "edit", "DO NOT EDIT", "thiſ iſ generated",
              "\u212aeep out", "keep", " out", "do not eKit",
              "\n", "\n\n", "x", "é", "😀", "\r\n", "gen", "erated", " "]
    rng = random.Random(3)
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    texts += ["x\nx\nx\ndo not edit", "auto-", "generated by", "", None, "a\nb\ngenerated by"]
    found = HeadMatches(lines, pattern)(pa.chunked_array([pa.array(texts, pa.large_string())]))[HEAD_MATCH]
    regex = re2.compile(pattern)
    expected = [regex.search("\n".join((text or "").split("\n")[:lines])) is not None for text in texts]
    assert found.to_pylist() == expected
    assert 300 < sum(expected) < 2700 and expected[-6:] == [False, False, True, False, False, True]
    assert all(HeadMatches(lines, pattern)(pa.chunked_array([pa.array([text])]))[HEAD_MATCH].to_pylist() == [True]
               for text in ["thiſ iſ generated", "\u212aeep out"])
