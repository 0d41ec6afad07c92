"""PII redaction throughput: the clean stage's per-shard function against the same detectors run naively.

The corpus is a few thousand real source files (this interpreter's stdlib and site-packages `.py` files,
every k-th in sorted order, each at most 1 MB), as Parquet-shaped tables of 500 files. Both sides run in
one process, on the same rules (conf/clean/, decontamination off):

* stage: `clean_table`, as each worker of the clean stage runs it on a shard;
* naive: per file, each detector called on its own the plain way: detect-secrets' 18 plugins on every
  line (as `detect_secrets.core.scan` does; no whole-text prefilters, no gates), the IP regex over the
  whole text, the password patterns over the whole text, the email regex; then the same acceptance
  rules and the same replacement.

Both must give the same redacted text for every file (checked), so the ratio is the cost of the naive
scan, not a difference in what is found. Prints MB/s of both and the ratio.
Run: `.venv/bin/python bench/bench_clean.py [N_FILES]`.
"""

from __future__ import annotations

import site
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
# The rows are built with the tests' factory; the bench runs as a script, so the root is not on sys.path.
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from starbuild.clean import ips, keys, passwords  # noqa: E402
from starbuild.clean.pii import CleanConfig  # noqa: E402
from starbuild.clean.redact import Rules, redact_text, rules_from  # noqa: E402
from starbuild.clean.stage import clean_table  # noqa: E402
from starbuild.core.config import compose, typed_section  # noqa: E402
from tests.factories import raw_row, raw_table  # noqa: E402

N_FILES = 3000
SHARD_ROWS = 500
MAX_BYTES = 1_000_000


def corpus(n: int) -> list[tuple[str, str]]:
    """(path, text) of `n` real .py files spread over the stdlib and site-packages, in a fixed order."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), *map(Path, site.getsitepackages())]
    paths = sorted({p for root in roots for p in root.rglob("*.py") if p.is_file()
                    and 0 < p.stat().st_size <= MAX_BYTES})
    step = max(1, len(paths) // n)
    files = []
    for path in paths[::step][:n]:
        try:
            files.append((str(path), path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            continue
    return files


def tables(files: list[tuple[str, str]]) -> list[pa.Table]:
    """The files as shards of SHARD_ROWS rows."""
    rows = [raw_row("bench/py", path, text) for path, text in files]
    return [raw_table(rows[i:i + SHARD_ROWS]) for i in range(0, len(rows), SHARD_ROWS)]


def naive_plugin_hits(scan: keys.Scanner, lines: keys.Lines, config: bool) -> Iterator:
    """Every plugin on every line (and every quoted config line), as detect-secrets scans a file."""
    views = [lines] + ([view] if config and (view := keys.config_view(lines)) is not None else [])
    for plugin in scan.plugins:
        for view in views:
            for number in range(len(view.starts)):
                line = view.line(number).rstrip()
                for secret in plugin.analyze_line(filename="file", line=line, line_number=number + 1):
                    if secret.secret_value and not keys.filtered(scan, secret.secret_value, line, plugin):
                        yield secret.secret_value, number, plugin


def whole_text(text: str) -> Iterator[tuple[int, int]]:
    """The whole text as the one region to scan (no line gating)."""
    yield 0, len(text)


def naive(files: list[tuple[str, str]], rules: Rules) -> list[str]:
    """Each file redacted with every detector run the plain way."""
    with (mock.patch.object(keys, "plugin_hits", naive_plugin_hits),
          mock.patch.object(ips, "candidate_lines", whole_text),
          mock.patch.object(passwords, "hint_lines", whole_text)):
        return [redact_text(text, rules, raw_row("bench/py", path, text)["blob_id"], path)[0] for path, text in files]


def stage(shards: list[pa.Table], rules: Rules) -> list[str]:
    """Each shard through the stage's per-shard function."""
    return [text for shard in shards for text in clean_table(shard, rules, None)[0].column("content").to_pylist()]


def timed(fn, *args):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N_FILES
    rules = rules_from(typed_section(compose([], conf_dir=ROOT / "conf"), "clean", CleanConfig))
    files = corpus(n)
    shards = tables(files)
    size = sum(len(text.encode("utf-8")) for _, text in files) / 1e6
    # Warm both paths (plugin objects, compiled patterns, the gibberish model) before timing.
    stage(shards[:1], rules), naive(files[:5], rules)
    stage_s, ours = timed(stage, shards, rules)
    naive_s, theirs = timed(naive, files, rules)
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    redacted = sum(a != text for a, (_, text) in zip(ours, files, strict=True))
    print(f"corpus: {len(files)} .py files from the stdlib and site-packages, {size:.1f} MB, "
          f"{len(shards)} shards; {redacted} files redacted")
    print(f"naive (each detector per file, detect-secrets on every line): {naive_s:7.2f} s  {size / naive_s:6.2f} MB/s")
    print(f"stage clean_table (prefiltered, gated):                       {stage_s:7.2f} s  {size / stage_s:6.2f} MB/s")
    print(f"ratio naive/stage (higher is better for the stage): {naive_s / stage_s:.1f}x; "
          f"identical output for {same}/{len(files)} files")
    assert same == len(files), "the stage and the naive scan disagree"


if __name__ == "__main__":
    main()
