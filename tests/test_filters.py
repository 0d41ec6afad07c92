"""The filter stage: its DuckDB SQL against a plain-Python reference of the Stack v2 rules."""

from __future__ import annotations

import json
import random
import unicodedata

import duckdb
import pytest

from starbuild.core import layout
from starbuild.core.schemas import RAW, SchemaMismatch
from starbuild.core.shards import list_shards, read_shard, write_shard
from starbuild.core.stage import StageError
from starbuild.filters.stack_v2 import REASONS, Thresholds, drop_reasons, measure
from starbuild.filters.stage import run_filter
from tests.factories import file_bytes, raw_row, raw_table, with_overrides, write_table


def reference_reason(content: str | None, language: str | None, cfg) -> str | None:
    """The Stack v2 rules in plain Python, first failing reason wins (None = keep)."""
    text = content or ""
    lines = text.split("\n")
    lengths = [len(line) for line in lines]
    if len(lines) > cfg.max_lines:
        return "too_many_lines"
    if language in cfg.long_line_exempt_languages:
        if max(lengths) > cfg.exempt_max_line_length:
            return "long_lines"
    elif sum(lengths) / len(lines) > cfg.max_avg_line_length or max(lengths) > cfg.max_line_length:
        return "long_lines"
    is_letter = str.isalnum if language in cfg.alnum_languages else str.isalpha
    letters = sum(map(is_letter, text))
    if not text or letters / len(text) < cfg.min_alpha_fraction:
        return "low_alpha"
    return None


def varied_cases(cfg) -> list[tuple[str, str | None, str | None]]:
    """(path, language, content) cases around every threshold of `cfg`."""
    avg, longest = int(cfg.max_avg_line_length), int(cfg.max_line_length)
    exempt_max = int(cfg.exempt_max_line_length)
    return [
        ("ok.py", "Python", "def f(x):\n    return x + 1\n"),
        ("empty.py", "Python", ""),
        ("none.py", "Python", None),
        ("newlines.py", "Python", "\n\n\n"),
        ("crlf.py", "Python", "def f():\r\n    return 1\r\n"),
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
        ("lines_at.py", "Python", "a\n" * (cfg.max_lines - 1) + "a"),
        ("lines_over.py", "Python", "a\n" * cfg.max_lines + "a"),
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
        ("roman.py", "Motorola 68K Assembly", "ⅠⅡⅢⅣ ...."),  # Nl: numeric, not alphabetic
        ("roman_py.py", "Python", "ⅠⅡⅢⅣ ...."),
        ("superscript.py", "Motorola 68K Assembly", "²³¹ ¼½ ....."),  # No
        ("wide_lines.py", "Python", ("ü" * avg + "\n") * 4),  # code points, not bytes
    ]


def case_rows(cases) -> list[dict]:
    """Raw rows for (path, language, content) cases, sorted by path."""
    rows = []
    for path, language, content in sorted(cases, key=lambda case: case[0]):
        row = raw_row("org/repo", path, content or "", language=language)
        row["content"] = content
        rows.append(row)
    return rows


def small_cfg(smoke_cfg):
    """The smoke config with thresholds small enough to hit every boundary cheaply."""
    return with_overrides(smoke_cfg, filter={"max_lines": 50, "max_avg_line_length": 10, "max_line_length": 40,
                                             "exempt_max_line_length": 200})


@pytest.mark.parametrize("shrink", [False, True], ids=["conf", "small"])
def test_stage_agrees_with_reference(tmp_path, make_context, smoke_cfg, shrink):
    cfg = small_cfg(smoke_cfg) if shrink else smoke_cfg
    rows = case_rows(varied_cases(cfg.filter))
    write_table(tmp_path / layout.RAW, [rows[:10], rows[10:10], rows[10:]])  # includes an empty shard

    run_filter(make_context("filter", cfg))

    expected = [reference_reason(r["content"], r["language"], cfg.filter) for r in rows]
    assert set(expected) == {None, *REASONS}, "the cases must exercise every rule"
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
    assert metrics["dropped"] == {reason: expected.count(reason) for reason in REASONS}


def random_text(rng: random.Random) -> str:
    """A file of random lines drawn from letters, digits, punctuation, unicode and long runs."""
    pool = ["a", "Z", "7", " ", "_", "(", "\r", "é", "ж", "中", "😀", "\u0301", "٣", "Ⅻ"]
    lines = []
    for _ in range(rng.choice([0, 1, 2, 5, 30])):
        width = rng.choice([0, 3, 40, 99, 100, 101, 999, 1000, 1001, 2500])
        weights = [rng.random() for _ in pool]
        lines.append("".join(rng.choices(pool, weights=weights, k=width)))
    return "\n".join(lines)


def test_sql_matches_reference_row_by_row(smoke_cfg):
    rng = random.Random(7)
    languages = ["Python", "JSON", "Markdown", "WebAssembly", "Motorola 68K Assembly", None]
    rows = [
        raw_row("r", f"f{i}", text, language=rng.choice(languages))
        for i, text in enumerate(random_text(rng) for _ in range(400))
    ]
    table = raw_table(rows)
    for cfg in (smoke_cfg.filter, small_cfg(smoke_cfg).filter):
        with duckdb.connect() as con:
            got = drop_reasons(con, table, Thresholds.from_cfg(cfg))
        expected = [reference_reason(r["content"], r["language"], cfg) for r in rows]
        assert got == expected
        assert len(set(expected)) >= 3


def assigned_code_points() -> list[str]:
    """Every code point Python's Unicode database assigns (no surrogates)."""
    return [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and unicodedata.category(chr(cp)) != "Cn"]


def test_letter_classes_match_python_on_all_assigned_code_points(smoke_cfg):
    chars = assigned_code_points()
    chunks = ["".join(chars[i : i + 4096]) for i in range(0, len(chars), 4096)]
    rows = [raw_row("r", f"{i}a", c, language="Python") for i, c in enumerate(chunks)]
    rows += [raw_row("r", f"{i}n", c, language="WebAssembly") for i, c in enumerate(chunks)]
    with duckdb.connect() as con:
        features = measure(con, raw_table(rows), Thresholds.from_cfg(smoke_cfg.filter)).to_pylist()
    for row, feature in zip(rows, features, strict=True):
        text = row["content"]
        test = str.isalnum if row["language"] == "WebAssembly" else str.isalpha
        assert feature["letter_chars"] == sum(map(test, text)), row["path"]
        assert feature["n_chars"] == len(text)


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


def test_bad_config_and_bad_input_fail_clearly(tmp_path, make_context, smoke_cfg):
    write_table(tmp_path / layout.RAW, [[raw_row("r", "a.py", "x = 1\n")]])
    bad = with_overrides(smoke_cfg, filter={"min_alpha_fraction": 1.5})
    with pytest.raises(StageError, match="min_alpha_fraction"):
        run_filter(make_context("filter", bad))
    table = raw_table([raw_row("r", "a.py", "x")]).drop_columns(["language"])
    write_shard(table, tmp_path / layout.RAW / "part-00000.parquet")
    with pytest.raises(SchemaMismatch, match="language"):
        run_filter(make_context("filter"))
    assert not (tmp_path / layout.FILTERED).exists()
