"""A labelled near-duplicate corpus from real code: this interpreter's stdlib modules plus seeded, edited copies.

The originals are real source files nobody wrote for a test. About 60 of them get one or two planted
variants (identifiers renamed, top-level definitions reordered, comments added, literals changed, a small
function dropped or added). The labels are honest: a pair of documents is a true near-duplicate iff the
exact Jaccard of their 5-token shingle sets (`minhash.shingles`, the stage's own shingling) reaches 0.7,
whatever edits made them, and pairs between unrelated originals are labelled the same way.

`scaled(k)` gives k distinct copies of the corpus (other seeds, and every identifier renamed per copy so
copies share almost no shingles) for the scaling bench.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import itertools
import keyword
import random
import re
import sysconfig
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from starbuild.core import layout
from starbuild.dedup.minhash import jaccard, shingles
from tests.factories import raw_row, write_table

THRESHOLD = 0.7
NGRAM = 5
MIN_TOKENS = 5
N_ORIGINALS = 150
N_EDITED = 60
MIN_BYTES, MAX_BYTES = 2 * 1024, 40 * 1024
STDLIB = Path(sysconfig.__file__).parent
# Tests, vendored packages and generated codec tables (encodings/cp*.py share most of their text) are
# left out so the originals are independent hand-written modules.
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "encodings", "__pycache__", "lib2to3"}
IDENTIFIER = re.compile(r"\b[^\W\d]\w*\b")
NUMBER = re.compile(r"\b\d+\b")
SHORT_STRING = re.compile(r"'([A-Za-z][A-Za-z ]{1,18})'")
BLOCK_START = re.compile(r"^(?:async def |def |class |@)")
KEEP_NAMES = set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | {"self", "cls"}
WORDS = ("alpha", "bravo", "cache", "delta", "entry", "frame", "guard", "helper", "index", "joint", "key",
         "limit", "mode", "node", "owner", "probe", "queue", "route", "slot", "token", "unit", "value")
COMMENTS = ("# NOTE: kept for backwards compatibility with older callers.",
            "# TODO: revisit once the upstream fix is released.",
            "# This mirrors the behaviour of the C implementation.",
            "# Callers rely on the order here; do not sort.",
            "# XXX: slow path, only hit on unusual input.",
            "# Vendored from upstream with local fixes.")

Pair = tuple[str, str]


@dataclass(frozen=True)
class Doc:
    """One document: a unique id, where it sits (repo_name, path), its text and the original it derives from."""

    id: str
    repo_name: str
    path: str
    text: str
    family: str


@dataclass(frozen=True)
class Corpus:
    """Documents, the pairs with exact shingle Jaccard >= THRESHOLD, and every pair scoring >= 0.5 with its score."""

    docs: list[Doc]
    true_pairs: set[Pair]
    similar: dict[Pair, float]

    def by_location(self) -> dict[tuple[str, str], str]:
        """(repo_name, path) -> doc id."""
        return {(d.repo_name, d.path): d.id for d in self.docs}

    @functools.cached_property
    def signed_ids(self) -> set[str]:
        """Ids of the docs long enough to have a MinHash signature (computed once)."""
        return {d.id for d in self.docs if shingle_set(d.text)}


def pair(a: str, b: str) -> Pair:
    """An unordered pair as a sorted tuple."""
    return (a, b) if a <= b else (b, a)


def shingle_set(text: str) -> set[str]:
    """The stage's shingles of text (5 lowercased `\\w` tokens)."""
    return shingles(text, NGRAM, MIN_TOKENS)


def stdlib_files(count: int = N_ORIGINALS) -> list[Path]:
    """`count` stdlib modules of 2–40 KB, spread evenly over the sorted candidates (deterministic)."""
    found = sorted(p for p in STDLIB.rglob("*.py") if not SKIP_DIRS & set(p.relative_to(STDLIB).parts)
                   and MIN_BYTES <= p.stat().st_size <= MAX_BYTES)
    if len(found) < count:
        raise RuntimeError(f"only {len(found)} stdlib modules of {MIN_BYTES}-{MAX_BYTES} bytes under {STDLIB}")
    return [found[i * len(found) // count] for i in range(count)]


@functools.cache
def original_texts() -> tuple[tuple[str, str], ...]:
    """(stdlib-relative path, text) of the originals."""
    return tuple((p.relative_to(STDLIB).as_posix(), p.read_text(encoding="utf-8", errors="replace"))
                 for p in stdlib_files())


# --- edits that make a near-copy -------------------------------------------------------------------------


def rename_identifiers(text: str, rng: random.Random) -> str:
    """Rename two or three moderately rare local names consistently, as a fork refactoring them would."""
    counts = Counter(IDENTIFIER.findall(text))
    # A name used from twice up to 0.4% of the tokens changes few shingles; renaming `self` would change most.
    cap = max(2, sum(counts.values()) // 250)
    names = sorted(n for n, c in counts.items() if 2 <= c <= cap and n not in KEEP_NAMES and len(n) > 3)
    for old in rng.sample(names, min(len(names), rng.randint(2, 3))):
        text = re.sub(rf"\b{re.escape(old)}\b", f"{old}_{rng.choice(WORDS)}", text)
    return text


def top_level_blocks(text: str) -> tuple[list[str], list[list[str]]]:
    """(header lines, top-level definition blocks, each with its decorators and trailing lines)."""
    lines = text.splitlines(keepends=True)
    header: list[str] = []
    blocks: list[list[str]] = []
    for index, line in enumerate(lines):
        starts = BLOCK_START.match(line) and not (index and lines[index - 1].startswith("@"))
        if starts:
            blocks.append([])
        (blocks[-1] if blocks else header).append(line)
    return header, blocks


def join_blocks(header: list[str], blocks: list[list[str]]) -> str:
    """The text of a header and blocks, each block ending in a newline."""
    return "".join(header) + "".join("".join(b) if b[-1].endswith("\n") else "".join(b) + "\n" for b in blocks)


def reorder_definitions(text: str, rng: random.Random) -> str:
    """Shuffle the top-level functions and classes: only shingles across block boundaries change."""
    header, blocks = top_level_blocks(text)
    rng.shuffle(blocks)
    return join_blocks(header, blocks)


def add_comments(text: str, rng: random.Random) -> str:
    """Insert two to four comment lines at random line boundaries."""
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(2, 4)):
        at = rng.randrange(len(lines) + 1)
        indent = re.match(r"\s*", lines[at]).group() if at < len(lines) else ""
        lines.insert(at, f"{indent}{rng.choice(COMMENTS)}\n")
    return "".join(lines)


def change_literals(text: str, rng: random.Random) -> str:
    """Change up to three numbers and two short strings, as a fork tweaking defaults would."""
    numbers = list(NUMBER.finditer(text))
    strings = list(SHORT_STRING.finditer(text))
    edits = [(m.span(), str(int(m.group()) + rng.randint(1, 9))) for m in rng.sample(numbers, min(3, len(numbers)))]
    edits += [(m.span(), f"'{m.group(1)} {rng.choice(WORDS)}'") for m in rng.sample(strings, min(2, len(strings)))]
    # Right to left, so earlier spans stay valid.
    for (start, end), new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def drop_or_add_function(text: str, rng: random.Random) -> str:
    """Delete one small top-level function, or insert a small helper between two definitions."""
    header, blocks = top_level_blocks(text)
    small = [i for i, b in enumerate(blocks) if len(b) <= 12 and b[0].startswith("def ")]
    if small and rng.random() < 0.5:
        del blocks[rng.choice(small)]
    else:
        name, arg = rng.sample(WORDS, 2)
        helper = [f"def _{name}_of({arg}, default=None):\n", f'    """Return the {name} of {arg}, or default."""\n',
                  f"    return getattr({arg}, {name!r}, default)\n", "\n\n"]
        blocks.insert(rng.randrange(len(blocks) + 1), helper)
    return join_blocks(header, blocks)


EDITS: tuple[Callable[[str, random.Random], str], ...] = (
    rename_identifiers, reorder_definitions, add_comments, change_literals, drop_or_add_function)


def make_variant(text: str, rng: random.Random) -> str:
    """One near-copy: one to three different edits; always differs from the original."""
    for edit in rng.sample(EDITS, rng.randint(1, 3)):
        text = edit(text, rng)
    return text


# --- copies for scaling ----------------------------------------------------------------------------------


def rename_all(text: str, copy: int) -> str:
    """Suffix every non-keyword identifier with the copy number, so copies share almost no shingles."""
    if copy == 0:
        return text
    return IDENTIFIER.sub(lambda m: m.group() if m.group() in KEEP_NAMES else f"{m.group()}_c{copy}", text)


# --- labels ----------------------------------------------------------------------------------------------


def labelled_pairs(docs: list[Doc], floor: float = 0.5) -> dict[Pair, float]:
    """Every pair of docs with exact shingle Jaccard >= floor (size ratio prunes pairs that cannot reach it)."""
    sets = {d.id: shingle_set(d.text) for d in docs}
    ids = sorted((i for i in sets if sets[i]), key=lambda i: len(sets[i]))
    found: dict[Pair, float] = {}
    for index, a in enumerate(ids):
        for b in ids[index + 1:]:
            # J(A, B) <= |A| / |B| when |A| <= |B|; ids are sorted by size, so no later b can reach the floor.
            if len(sets[a]) < floor * len(sets[b]):
                break
            score = jaccard(sets[a], sets[b])
            if score >= floor:
                found[pair(a, b)] = score
    return found


def documents(seed: int = 0, copy: int = 0) -> list[Doc]:
    """The originals plus seeded variants of N_EDITED of them, every identifier renamed for `copy`."""
    rng = random.Random(seed)
    originals = original_texts()
    docs = [Doc(f"c{copy}/{rel}/0", f"stdlib-c{copy}/{rel}", rel, rename_all(text, copy), rel)
            for rel, text in originals]
    for rel, text in sorted(rng.sample(originals, N_EDITED)):
        for n in range(1, rng.randint(1, 2) + 1):
            variant = make_variant(text, rng)
            # A byte-identical copy is exact dedup's business, not near dedup's.
            while variant == text:
                variant = add_comments(variant, rng)
            docs.append(Doc(f"c{copy}/{rel}/{n}", f"fork{n}-c{copy}/{rel}", rel, rename_all(variant, copy), rel))
    return docs


def build(seed: int = 0, copy: int = 0) -> Corpus:
    """documents(seed, copy) labelled by exact shingle Jaccard."""
    docs = documents(seed, copy)
    similar = labelled_pairs(docs)
    return Corpus(docs, {p for p, score in similar.items() if score >= THRESHOLD}, similar)


@functools.cache
def corpus(seed: int = 0) -> Corpus:
    """The labelled corpus (cached: building it reads and shingles ~250 files)."""
    return build(seed)


def scaled(k: int, seed: int = 0, labels: bool = True) -> Corpus:
    """k distinct copies of the corpus (seeds seed..seed+k-1, identifiers renamed per copy).

    Labels are computed within each copy; across copies every identifier differs, so no pair there gets
    near the threshold. `labels=False` skips them (the scaling runs only need the documents).
    """
    parts = [build(seed + copy, copy) if labels else Corpus(documents(seed + copy, copy), set(), {})
             for copy in range(k)]
    return Corpus([d for p in parts for d in p.docs], set().union(*(p.true_pairs for p in parts)),
                  {key: value for p in parts for key, value in p.similar.items()})


# --- as the stage's input and output ---------------------------------------------------------------------


def rows(docs: Iterable[Doc]) -> list[dict]:
    """Raw rows of docs, each repository with its own root directory, sorted by (repo_name, path)."""
    made = [raw_row(d.repo_name, d.path, d.text, directory_id=hashlib.sha1(d.repo_name.encode()).hexdigest())
            for d in docs]
    return sorted(made, key=lambda r: (r["repo_name"], r["path"]))


def write_input(root: Path, docs: list[Doc], per_shard: int = 100) -> list[list[dict]]:
    """Write docs as data/filtered/ shards of `per_shard` rows; return the shards' rows."""
    table = rows(docs)
    shards = [table[i:i + per_shard] for i in range(0, len(table), per_shard)]
    write_table(root / layout.FILTERED, shards)
    return shards


def near_clusters(root: Path, by_location: dict[tuple[str, str], str]) -> list[list[str]]:
    """The doc ids of each near_dup cluster the stage wrote under root."""
    table = pq.read_table(root / layout.DEDUP_CLUSTERS).to_pylist()
    members: dict[str, list[str]] = {}
    for r in table:
        if r["reason"] == "near_dup":
            members.setdefault(r["cluster_id"], []).append(by_location[(r["repo_name"], r["path"])])
    return list(members.values())


def cluster_pairs(clusters: Iterable[Iterable[str]]) -> set[Pair]:
    """Every pair of docs that share a cluster."""
    return {pair(a, b) for members in clusters for a, b in itertools.combinations(sorted(set(members)), 2)}


@dataclass(frozen=True)
class Score:
    """Pair-level precision and recall against the exact-Jaccard labels."""

    precision: float
    recall: float
    predicted: int
    true: int
    hits: int

    def __str__(self) -> str:
        return (f"precision {self.precision:.3f} recall {self.recall:.3f} "
                f"({self.hits} of {self.predicted} predicted pairs true, {self.true} true pairs)")


def score(predicted: set[Pair], corpus: Corpus) -> Score:
    """Precision and recall of predicted pairs over the docs that have signatures."""
    signed = corpus.signed_ids
    predicted = {p for p in predicted if p[0] in signed and p[1] in signed}
    truth = {p for p in corpus.true_pairs if p[0] in signed and p[1] in signed}
    hits = len(predicted & truth)
    # No prediction is vacuously precise; no truth is vacuously recalled.
    return Score(hits / len(predicted) if predicted else 1.0, hits / len(truth) if truth else 1.0,
                 len(predicted), len(truth), hits)
