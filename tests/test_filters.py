"""The filter stage: its DuckDB rules against a plain-Python reference, rule by rule and in any order."""

from __future__ import annotations

import inspect
import json
import random
import unicodedata
from collections.abc import Callable, Mapping

import duckdb
import pytest

from starbuild.core import layout
from starbuild.core.config import compose
from starbuild.core.schemas import RAW, SchemaMismatch
from starbuild.core.shards import list_shards, read_shard, write_shard
from starbuild.core.stage import StageError
from starbuild.filters import rules as rules_module
from starbuild.filters.query import RuleSet, rules_from_config
from starbuild.filters.rules import LongLines, LowAlpha, MaxLines, Rule
from starbuild.filters.stage import run_filter
from tests.conftest import REPO_ROOT
from tests.factories import file_bytes, raw_row, raw_table, with_overrides, with_section, write_table

# --- the plain-Python reference: one function per rule class, true = drop ---------------------------


def ref_max_lines(text: str, language: str | None, rule: MaxLines) -> bool:
    return len(text.split("\n")) > rule.max_lines


def ref_long_lines(text: str, language: str | None, rule: LongLines) -> bool:
    lengths = [len(line) for line in text.split("\n")]
    if language in rule.exempt_languages:
        return max(lengths) > rule.exempt_max_line_length
    return sum(lengths) / len(lengths) > rule.max_avg_line_length or max(lengths) > rule.max_line_length


def ref_low_alpha(text: str, language: str | None, rule: LowAlpha) -> bool:
    is_letter = str.isalnum if language in rule.alnum_languages else str.isalpha
    return not text or sum(map(is_letter, text)) / len(text) < rule.min_alpha_fraction


REFERENCE: dict[type[Rule], Callable[..., bool]] = {
    MaxLines: ref_max_lines,
    LongLines: ref_long_lines,
    LowAlpha: ref_low_alpha,
}


def reference_reason(content: str | None, language: str | None, rules: Mapping[str, Rule]) -> str | None:
    """The first rule (in mapping order) whose reference drops the file; None keeps it."""
    for reason, rule in rules.items():
        if REFERENCE[type(rule)](content or "", language, rule):
            return reason
    return None


def test_every_rule_class_has_a_reference(smoke_cfg):
    classes = {cls for _, cls in inspect.getmembers(rules_module, inspect.isclass)
               if issubclass(cls, Rule) and not inspect.isabstract(cls)}
    assert classes == set(REFERENCE)
    assert {type(rule) for rule in rules_from_config(smoke_cfg.filter.rules).rules.values()} <= set(REFERENCE)


# --- cases ------------------------------------------------------------------------------------------


def varied_cases(rules: Mapping[str, Rule]) -> list[tuple[str, str | None, str | None]]:
    """(path, language, content) cases around every threshold of the conf's rules."""
    long_lines, max_lines = rules["long_lines"], rules["too_many_lines"].max_lines
    avg, longest = int(long_lines.max_avg_line_length), long_lines.max_line_length
    exempt_max = long_lines.exempt_max_line_length
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
    return with_overrides(smoke_cfg, filter={"rules": {
        "too_many_lines": {"max_lines": 50},
        "long_lines": {"max_avg_line_length": 10, "max_line_length": 40, "exempt_max_line_length": 200},
    }})


def random_text(rng: random.Random) -> str:
    """A file of random lines drawn from letters, digits, punctuation, unicode and long runs."""
    pool = ["a", "Z", "7", " ", "_", "(", "\r", "é", "ж", "中", "😀", "\u0301", "٣", "Ⅻ"]
    lines = []
    for _ in range(rng.choice([0, 1, 2, 5, 30])):
        width = rng.choice([0, 3, 40, 99, 100, 101, 999, 1000, 1001, 2500])
        weights = [rng.random() for _ in pool]
        lines.append("".join(rng.choices(pool, weights=weights, k=width)))
    return "\n".join(lines)


def random_rows(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    languages = ["Python", "JSON", "Markdown", "WebAssembly", "Motorola 68K Assembly", None]
    return [raw_row("r", f"f{i}", random_text(rng), language=rng.choice(languages)) for i in range(n)]


def sql_reasons(rules: RuleSet, rows: list[dict]) -> list[str | None]:
    with duckdb.connect() as con:
        return rules.drop_reasons(con, raw_table(rows))


# --- the rules against the reference ----------------------------------------------------------------


@pytest.mark.parametrize("shrink", [False, True], ids=["conf", "small"])
def test_stage_agrees_with_reference(tmp_path, make_context, smoke_cfg, shrink):
    cfg = small_cfg(smoke_cfg) if shrink else smoke_cfg
    rules = rules_from_config(cfg.filter.rules)
    rows = case_rows(varied_cases(rules.rules))
    write_table(tmp_path / layout.RAW, [rows[:10], rows[10:10], rows[10:]])  # includes an empty shard

    run_filter(make_context("filter", cfg))

    expected = [reference_reason(r["content"], r["language"], rules.rules) for r in rows]
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
    assert metrics["dropped"] == {reason: expected.count(reason) for reason in rules.reasons}


def test_sql_matches_reference_row_by_row(smoke_cfg):
    rows = random_rows(7, 400)
    for cfg in (smoke_cfg, small_cfg(smoke_cfg)):
        rules = rules_from_config(cfg.filter.rules)
        expected = [reference_reason(r["content"], r["language"], rules.rules) for r in rows]
        assert sql_reasons(rules, rows) == expected
        assert len(set(expected)) >= 3


def test_each_rule_alone_matches_its_reference(smoke_cfg):
    rows = random_rows(5, 300) + case_rows(varied_cases(rules_from_config(smoke_cfg.filter.rules).rules))
    for cfg in (smoke_cfg, small_cfg(smoke_cfg)):
        for reason, rule in rules_from_config(cfg.filter.rules).rules.items():
            alone = {reason: rule}
            expected = [reference_reason(r["content"], r["language"], alone) for r in rows]
            assert sql_reasons(RuleSet(alone), rows) == expected, reason
            assert expected.count(reason) > 0 and expected.count(None) > 0, reason


def test_removing_and_reordering_rules_changes_reasons_as_the_reference_says(tmp_path, make_context, smoke_cfg):
    cfg = small_cfg(smoke_cfg)
    rows = case_rows(varied_cases(rules_from_config(cfg.filter.rules).rules)) + random_rows(9, 200)
    rows = sorted(rows, key=lambda r: r["path"])
    write_table(tmp_path / layout.RAW, [rows])
    conf = rules_from_config(cfg.filter.rules).rules
    by_default = [reference_reason(r["content"], r["language"], conf) for r in rows]

    # Removed the way `dvc exp run -S '~filter.rules.low_alpha'` does: a Hydra deletion override.
    removed = small_cfg(compose(["experiment=smoke", "~filter.rules.low_alpha"], conf_dir=REPO_ROOT / "conf"))
    assert list(removed.filter.rules) == ["too_many_lines", "long_lines"]
    run_filter(make_context("filter", removed))
    without = rules_from_config(removed.filter.rules).rules
    expected = [reference_reason(r["content"], r["language"], without) for r in rows]
    metrics = json.loads((tmp_path / "metrics/filter.json").read_text())
    assert metrics["dropped"] == {"too_many_lines": expected.count("too_many_lines"),
                                  "long_lines": expected.count("long_lines")}
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
    expected = [reference_reason(r["content"], r["language"], rules.rules) for r in rows]
    assert expected != by_default and "very_long_files" in expected
    assert sql_reasons(rules, rows) == expected
    run_filter(make_context("filter", cfg2))
    metrics = json.loads((tmp_path / "metrics/filter.json").read_text())
    assert metrics["dropped"] == {reason: expected.count(reason) for reason in order}


def test_rules_sharing_a_feature_compute_it_once_and_must_agree():
    a = LowAlpha(min_alpha_fraction=0.25, alnum_languages=["WebAssembly"])
    b = LowAlpha(min_alpha_fraction=0.5, alnum_languages=("WebAssembly",))
    shared = RuleSet({"low_alpha": a, "very_low_alpha": b, "long": LongLines(10, 20, [], 30), "lines": MaxLines(3)})
    assert [f.name for f in shared.features].count("letter_chars") == 1
    assert [f.name for f in shared.features].count("line_lengths") == 1
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
    with duckdb.connect() as con:
        features = rules.measure(con, raw_table(rows)).to_pylist()
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


def test_bad_input_fails_clearly(tmp_path, make_context):
    table = raw_table([raw_row("r", "a.py", "x")]).drop_columns(["language"])
    (tmp_path / layout.RAW).mkdir(parents=True)
    write_shard(table, tmp_path / layout.RAW / "part-00000.parquet")
    with pytest.raises(SchemaMismatch, match="language"):
        run_filter(make_context("filter"))
    assert not (tmp_path / layout.FILTERED).exists()
