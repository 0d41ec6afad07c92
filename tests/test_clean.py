"""The clean stage: the email detector on realistic code, and the redaction of every shard (the other PII
detectors: tests/test_pii.py)."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from starbuild import special_tokens
from starbuild.clean.pii import find_emails
from starbuild.clean.redact import PLACEHOLDERS
from starbuild.clean.stage import run_clean
from starbuild.core import layout
from starbuild.core.schemas import CLEAN, UNKNOWN_LANGUAGE
from starbuild.core.shards import list_shards, read_shard
from starbuild.core.stage import StageError
from tests.factories import file_bytes, raw_row, with_overrides, write_table

FOUND = [
    ("# Author: John Doe <john.doe@gmail.com>\n", ["john.doe@gmail.com"]),
    ('    maintainer_email="jane+pypi@sub.example.co.uk",\n', ["jane+pypi@sub.example.co.uk"]),
    ('  "author": "Ana Lima <ana_lima@empresa.com.br>",\n', ["ana_lima@empresa.com.br"]),
    ("<a href='mailto:info@acme-corp.io'>mail us</a>", ["info@acme-corp.io"]),
    ("Report bugs to bugs@example.org.", ["bugs@example.org"]),
    ("cc: a@x.org,b@y.net;c@z.dev", ["a@x.org", "b@y.net", "c@z.dev"]),
    ("(contact: first.last-name@dept.uni.edu)", ["first.last-name@dept.uni.edu"]),
    ("Copyright 2019 ACME <OPS@ACME.COM>", ["OPS@ACME.COM"]),
    ("punycode: user@xn--bcher-kva.xn--p1ai", ["user@xn--bcher-kva.xn--p1ai"]),
    ("git clone git@github.com:org/repo.git", ["git@github.com"]),
    ("percent%user@mail.example.com", ["percent%user@mail.example.com"]),
]

NOT_FOUND = [
    '@app.route("/users/<int:user_id>")',
    "@Override\npublic String toString() {",
    'import x from "@babel/core";',
    "@media screen and (max-width: 600px) {",
    "ssh deploy@localhost",
    "root@10.0.0.1:/srv",
    '"react": "react@18.2.0",',
    'background: url("icon@2x.png");',
    "y = q@k.transpose(-2, -1)",
    "z = a@b.data[0]",
    "x = a@b.T",
    "name@host.c",
    "broken@exa_mple.com",
    "trailing-@example.com",
    "docker pull image@sha256:0123abcd",
    "user@example.com1",
]


@pytest.mark.parametrize(("text", "emails"), FOUND)
def test_finds_emails(text, emails):
    assert find_emails(text) == emails


@pytest.mark.parametrize("text", NOT_FOUND)
def test_ignores_code_that_is_not_an_email(text):
    assert find_emails(text) == []


def test_handles_long_email_free_runs_quickly():
    # One token, many candidate starts: must stay linear, not backtrack quadratically.
    text = "a" * 200_000 + "@" + "b." * 100_000 + "-" * 100_000
    assert find_emails(text) == []


def corpus() -> list[list[dict]]:
    """Two shards of realistic files, one with no content."""
    setup = 'setup(\n    author="Jo",\n    author_email="jo@example.com",\n)\n# or jo2@example.com\n'
    readme = "Questions? Write to help@project.dev.\n\nSee @decorators and user@localhost.\n"
    plain = "def f(x):\n    return x@w.T\n"
    none = raw_row("r/b", "empty.py", "")
    none["content"] = None
    return [
        [raw_row("r/a", "README.md", readme, language="Markdown"), raw_row("r/a", "setup.py", setup)],
        [raw_row("r/a", "z.py", plain), none],
    ]


def test_stage_redacts_and_keeps_blob_columns(tmp_path, make_context):
    shards = corpus()
    write_table(tmp_path / layout.DEDUP, shards)
    run_clean(make_context("clean"))

    out = list_shards(tmp_path / layout.CLEAN)
    assert [p.name for p in out] == ["part-00000.parquet", "part-00001.parquet"]
    rows = [row for path in out for row in read_shard(path).to_pylist()]
    assert read_shard(out[0]).schema.equals(CLEAN)
    originals = [row for shard in shards for row in shard]
    assert [r["pii_redactions"] for r in rows] == [1, 2, 0, 0]
    assert rows[0]["content"].startswith("Questions? Write to <EMAIL>.\n")
    assert "user@localhost" in rows[0]["content"]
    assert 'author_email="<EMAIL>"' in rows[1]["content"] and "# or <EMAIL>" in rows[1]["content"]
    assert rows[2]["content"] == originals[2]["content"]
    assert rows[3]["content"] is None
    for row, original in zip(rows, originals, strict=True):
        # length_bytes (and blob_id) still describe the original blob, not the redacted text.
        assert {k: v for k, v in row.items() if k not in ("content", "pii_redactions")} == {
            k: v for k, v in original.items() if k != "content"
        }

    metrics = json.loads((tmp_path / "metrics/clean.json").read_text())
    emails = {key: metrics.pop(key) for key in ("files", "files_with_emails", "emails_redacted")}
    assert emails == {"files": 4, "files_with_emails": 2, "emails_redacted": 3}
    pii = {key: metrics.pop(key) for key in ("pii", "files_with_pii", "pii_redacted", "files_pii_failed")}
    assert pii == {"pii": {"email": 3, "ipv4": 0, "ipv6": 0, "key": 0, "password": 0, "name": 0},
                   "files_with_pii": 2, "pii_redacted": 3, "files_pii_failed": 0}
    # Nothing here is benchmark text (tests/test_decontaminate.py covers decontamination).
    assert (metrics["files_decontaminated"], metrics["decontaminated"]) == (0, {"humaneval": 0})


def files_and_bytes(rows: list[dict], column: str) -> dict[str, dict[str, int]]:
    """The reference per-value counts: files and length_bytes per `column`, null as "unknown", in Python."""
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = found.setdefault(row[column] or UNKNOWN_LANGUAGE, {"files": 0, "bytes": 0})
        counts["files"] += 1
        counts["bytes"] += row["length_bytes"]
    return dict(sorted(found.items()))


def test_languages_and_license_types_count_the_written_rows(tmp_path, make_context, smoke_cfg):
    copied = "Please sort these numbers descending, ties by name\n"
    shards = [
        [raw_row("r/a", "README.md", "# Title\n", language="Markdown", license_type="no_license"),
         raw_row("r/a", "notes", copied, language=None)],
        [raw_row("r/b", "x.py", "x = 1\n"), raw_row("r/b", "y", "y\n", language=None, license_type="non_permissive"),
         raw_row("r/c", "z.py", "z = 22\n", license_type=None)],
    ]
    write_table(tmp_path / layout.DEDUP, shards)
    # A user benchmark that `notes` copies: the stage drops it, so it must not be counted.
    (tmp_path / "data/external").mkdir(parents=True)
    (tmp_path / "data/external/mine.jsonl").write_text(json.dumps({"task_id": 1, "q": copied}) + "\n")
    benchmarks = [{"name": "mine", "path": "data/external/mine.jsonl", "fields": ["q"]}]
    run_clean(make_context("clean", with_overrides(smoke_cfg, clean={"decontamination": {"benchmarks": benchmarks}})))

    rows = [row for path in list_shards(tmp_path / layout.CLEAN) for row in read_shard(path).to_pylist()]
    metrics = json.loads((tmp_path / "metrics/clean.json").read_text())
    assert metrics["files_decontaminated"] == 1 and len(rows) == 4
    assert metrics["languages"] == files_and_bytes(rows, "language") == {
        "Markdown": {"files": 1, "bytes": 8}, "Python": {"files": 2, "bytes": 13}, "unknown": {"files": 1, "bytes": 2}}
    assert metrics["license_types"] == files_and_bytes(rows, "license_type") == {
        "no_license": {"files": 1, "bytes": 8}, "non_permissive": {"files": 1, "bytes": 2},
        "permissive": {"files": 1, "bytes": 6}, "unknown": {"files": 1, "bytes": 7}}
    for counts in (metrics["languages"], metrics["license_types"]):
        assert sum(c["files"] for c in counts.values()) == len(rows) == (
            metrics["files"] - metrics["files_decontaminated"] - metrics["files_pii_failed"])
        assert sum(c["bytes"] for c in counts.values()) == sum(r["length_bytes"] for r in rows)


def test_deterministic_and_worker_independent(tmp_path, make_context, smoke_cfg):
    write_table(tmp_path / layout.DEDUP, corpus())

    def snapshot() -> dict[str, bytes]:
        return file_bytes(tmp_path, layout.CLEAN, layout.metrics_file("clean"))

    run_clean(make_context("clean"))
    first = snapshot()
    run_clean(make_context("clean"))
    assert snapshot() == first
    run_clean(make_context("clean", with_overrides(smoke_cfg, executor={"workers": 1})))
    assert snapshot() == first


def test_placeholders_are_special_tokens_and_bad_config_is_named(tmp_path, make_context, smoke_cfg):
    write_table(tmp_path / layout.DEDUP, corpus())
    run_clean(make_context("clean"))
    first = read_shard(tmp_path / layout.CLEAN / "part-00000.parquet").to_pylist()[0]
    assert f"Write to {special_tokens.EMAIL}." in first["content"]
    assert set(PLACEHOLDERS.values()) <= set(special_tokens.SPECIAL_TOKENS)
    # An untyped config, as a stage reads params.yaml under DVC: a list is no model path.
    untyped = OmegaConf.create(OmegaConf.to_container(smoke_cfg))
    untyped.clean.ner_model = ["models/starpii"]
    with pytest.raises(StageError, match=r"^clean.ner_model: .*; fix conf/clean/$"):
        run_clean(make_context("clean", untyped))
