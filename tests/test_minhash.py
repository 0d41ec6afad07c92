"""MinHash near-dedup primitives: LSH parameters, tokenizing, signature accuracy, determinism, scale."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash

from starbuild.dedup import minhash
from starbuild.dedup.minhash import (
    MinHashParams,
    SignatureBatch,
    band_keys,
    estimate_jaccard,
    jaccard,
    optimal_bands_rows,
    permutations,
    shingle_hashes,
    shingle_table,
    shingles,
    signature,
    signature_matrix,
    signatures,
    tokens,
)

SEPARATORS = [" ", ".", "(", ", ", "\n    ", "->", " = "]
# permutations(250, 42)[0][:3], [1][:3], and band_keys(arange(250), 25, 10)[:2], as first computed.
GOLDEN_A = [14276969152011380360, 8095878257575067585, 15838336090824644132]
GOLDEN_B = [12026004782584780038, 16002377670275755438, 8372919619516227547]
GOLDEN_KEYS = [5604472559562451787, -3414445716040484581]


def reference_signature(hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The signature as the definition reads, in Python integers: min over h of ((a*h + b) mod 2^64) >> 32."""
    return np.array([min(((int(ai) * int(h) + int(bi)) % 2**64) >> 32 for h in hashes.tolist())
                     for ai, bi in zip(a, b, strict=True)], dtype=np.uint32)


def reference_token_hash(token: str) -> int:
    """FNV-1a 64 of the token's UTF-8 bytes, then murmur3's fmix64, in Python integers."""
    state = 0xCBF29CE484222325
    for byte in token.encode("utf-8"):
        state = ((state ^ byte) * 0x100000001B3) % 2**64
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        state ^= state >> 33
        state = (state * multiplier) % 2**64
    return state ^ (state >> 33)


def reference_shingle_hashes(text: str, ngram: int = 5) -> list[int]:
    """The shingle hashes as the definition reads, in Python integers: per window of tokens, the top 32
    bits of sum(token_hash * m_position) mod 2^64."""
    words = tokens(text)
    multipliers = [int(m) for m in minhash._position_multipliers(ngram)]
    windows = [words[i : i + ngram] for i in range(len(words) - ngram + 1)]
    combined = {sum(reference_token_hash(w) * m for w, m in zip(window, multipliers, strict=True))
                for window in windows}
    return sorted((value % 2**64) >> 32 for value in combined)


def code_like(words: list[str], rng: np.random.Generator) -> str:
    """Words joined by random punctuation, so the tokenizer has real separators to split on."""
    seps = rng.choice(SEPARATORS, size=len(words))
    return "".join(w + s for w, s in zip(words, seps, strict=True))


def random_words(rng: np.random.Generator, count: int) -> list[str]:
    """count tokens from a vocabulary large enough that unrelated shingles never coincide."""
    return [f"Tok{n}" for n in rng.integers(0, 10**9, size=count)]


def pair_with_jaccard(rng: np.random.Generator, target: float, segments: int = 40, width: int = 8) -> tuple[str, str]:
    """Two docs sharing a prefix of k of `segments` segments, k set so the shingle Jaccard is near target."""
    shared = round(2 * segments * target / (1 + target))  # J ~ k / (2n - k)
    first = random_words(rng, segments * width)
    second = first[: shared * width] + random_words(rng, (segments - shared) * width)
    return code_like(first, rng), code_like(second, rng)


# --- LSH parameters ---------------------------------------------------------------------------


def test_bands_rows_at_bigcode_setting() -> None:
    assert MinHashParams().bands_rows() == (25, 10)
    assert MinHashParams(num_perm=256).bands_rows() == (25, 10)  # the v2 script's doctest
    assert optimal_bands_rows(0.9, 128) == (5, 25)  # datasketch's MinHashLSH(0.9, 128)


def test_bands_rows_trend_and_budget() -> None:
    thresholds = [0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    choices = [MinHashParams(threshold=t).bands_rows() for t in thresholds]
    assert all(b * r <= 250 for b, r in choices)
    rows = [r for _, r in choices]
    bands = [b for b, _ in choices]
    # A stricter threshold needs longer bands (fewer chance collisions), so fewer of them fit.
    assert rows == sorted(rows) and rows[0] < rows[-1]
    assert bands == sorted(bands, reverse=True) and bands[0] > bands[-1]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_perm", 0),
        ("num_perm", 2.5),
        ("ngram", 0),
        ("min_tokens", -1),
        ("threshold", 0.0),
        ("threshold", 1.0),
        ("threshold", 1.5),
        ("threshold", "0.7"),
        ("seed", -1),
        ("seed", True),
    ],
)
def test_invalid_params_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        MinHashParams(**{field: value})


# --- tokens and shingles ----------------------------------------------------------------------


def test_tokens_lowercase_and_split_on_non_word() -> None:
    assert tokens("Foo.bar(x)") == ["foo", "bar", "x"]
    assert tokens("  self.__init__(A_1, b2);\n") == ["self", "__init__", "a_1", "b2"]
    assert tokens("Größe = ÉTÉ") == ["größe", "été"]  # letters and numbers of every script
    assert tokens("x² = π·r²; 三 + ٣ - naïve") == ["x²", "π", "r²", "三", "٣", "naïve"]
    assert tokens("") == [] and tokens("(){};") == []


def test_shingles_are_five_tokens_joined_by_one_space() -> None:
    assert shingles("A.b(c, d)+e f", 5, 5) == {"a b c d e", "b c d e f"}
    assert shingles("one two three four five", 5, 5) == {"one two three four five"}
    assert shingles("one two three four", 5, 5) == set()
    assert shingles("", 5, 5) == set()
    # Repeats collapse: a file that is one line pasted twice has the line's shingles plus the seams.
    assert len(shingles("a b c d e a b c d e", 5, 5)) == 5


def test_short_doc_between_min_tokens_and_ngram_is_one_shingle() -> None:
    assert shingles("a b c", 5, 2) == {"a b c"}
    assert shingles("a", 5, 2) == set()


def test_shingle_hashes_are_sorted_distinct_combinations_of_token_hashes() -> None:
    text = "Größe x y z w; Größe x y z w ß"
    hashes = shingle_hashes(text, 5, 5)
    assert hashes.dtype == np.uint32
    assert hashes.tolist() == reference_shingle_hashes(text)
    assert hashes.size == len(shingles(text, 5, 5)) == 6
    # Order matters: the same tokens in another order are another shingle.
    assert shingle_hashes("a b c d e", 5, 5).tolist() != shingle_hashes("e d c b a", 5, 5).tolist()
    assert shingle_hashes("too short", 5, 5).shape == (0,)


def test_the_compiled_scan_splits_exactly_like_tokens() -> None:
    # Two-, three- and four-byte characters, combining marks (not word characters), digits of other scripts.
    text = "Naïve CAFÉ = 日本語テスト(🚀 x²) + ٣·π — e\u0301te\u0301; Σίσυφος_1 ǅemal 𝔘𝔫𝔦 end end end"
    assert shingle_hashes(text, 5, 5).tolist() == reference_shingle_hashes(text)
    assert len(shingles(text, 5, 5)) == shingle_hashes(text, 5, 5).size
    words = minhash.word_code_points()
    for char in "aZ_9²٣日ǅ𝔘":
        assert words[ord(char)], char
    for char in " ·—\u0301🚀-(":
        assert not words[ord(char)], char


def test_a_batch_equals_its_texts_one_by_one() -> None:
    texts = ["def f(x):\n    return x + 1  # one two", None, "", "a b c", "Größe x y z w; Größe x y z w ß",
             "one two three four five six"] * 3
    owners, hashes = shingle_table(texts, 5, 3)
    for index, text in enumerate(texts):
        assert hashes[owners == index].tolist() == shingle_hashes(text or "", 5, 3).tolist()
    # A text between min_tokens and ngram tokens is one shingle of all its tokens.
    assert (owners == 3).sum() == 1


def test_lone_surrogates_separate_tokens() -> None:
    text = "a b c d\udc80e f"  # what a surrogateescape decode leaves for a stray byte
    assert tokens(text) == ["a", "b", "c", "d", "e", "f"]
    assert shingle_hashes(text, 5, 5).tolist() == shingle_hashes("a b c d e f", 5, 5).tolist()


# --- accuracy ---------------------------------------------------------------------------------


def test_estimate_tracks_exact_jaccard() -> None:
    rng = np.random.Generator(np.random.PCG64(7))
    batch = SignatureBatch()
    exact, estimated = [], []
    for target in np.linspace(0.0, 1.0, 220):
        left, right = pair_with_jaccard(rng, float(target))
        exact.append(jaccard(shingles(left, 5, 5), shingles(right, 5, 5)))
        estimated.append(estimate_jaccard(batch.signature(left), batch.signature(right)))
    exact_arr, estimated_arr = np.array(exact), np.array(estimated)
    # Not vacuous: the pairs cover disjoint, identical and everything between.
    assert exact_arr.min() < 0.05 and exact_arr.max() == 1.0
    assert np.histogram(exact_arr, bins=5, range=(0, 1))[0].min() >= 20
    # 250 permutations: the estimate's standard deviation is at most 0.5 / sqrt(250) ~ 0.032.
    assert np.abs(estimated_arr - exact_arr).mean() <= 0.05
    assert np.abs(estimated_arr - exact_arr).max() <= 0.15
    assert np.all(estimated_arr[exact_arr == 1.0] == 1.0)


def test_jaccard_and_estimate_edge_cases() -> None:
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard(set(), set()) == 0.0
    sig = signature(np.array([5, 9], np.uint32), *permutations(16, 0))
    assert estimate_jaccard(sig, sig) == 1.0
    assert estimate_jaccard(sig, np.empty(0, np.uint32)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        estimate_jaccard(sig, sig[:8])


# --- determinism ------------------------------------------------------------------------------


def test_same_text_same_signature_and_keys() -> None:
    text = "def add(a, b):\n    return a + b  # adds two numbers together, carefully\n" * 3
    a1, b1 = permutations(250, 42)
    a2, b2 = permutations(250, 42)
    assert a1.dtype == b1.dtype == np.uint64
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    assert len(set(a1.tolist())) == 250 and a1.max() > 2**63  # 64-bit draws
    hashes = shingle_hashes(text, 5, 5)
    sig1, sig2 = signature(hashes, a1, b1), signature(shingle_hashes(text, 5, 5), a2, b2)
    assert sig1.dtype == np.uint32 and sig1.shape == (250,)
    assert np.array_equal(sig1, sig2)
    keys = band_keys(sig1, 25, 10)
    assert keys.dtype == np.int64 and keys.shape == (25,)
    assert np.array_equal(keys, band_keys(sig2.copy(), 25, 10))
    assert np.array_equal(SignatureBatch().signature(text), sig1)


def test_other_seed_other_permutations() -> None:
    a1, b1 = permutations(250, 42)
    a2, b2 = permutations(250, 43)
    assert not np.array_equal(a1, a2) and not np.array_equal(b1, b2)
    params = MinHashParams(seed=43)
    text = " ".join(f"w{i}" for i in range(50))
    assert not np.array_equal(SignatureBatch(params).signature(text), SignatureBatch().signature(text))


def test_golden_values_pin_the_draw_and_the_key_hash() -> None:
    # Frozen outputs: if numpy's PCG64 stream or the key layout ever changes, so would every
    # stored bucket, and this says so.
    a, b = permutations(250, 42)
    assert a[:3].tolist() == GOLDEN_A and b[:3].tolist() == GOLDEN_B
    sig = np.arange(250, dtype=np.uint32)
    assert band_keys(sig, 25, 10)[:2].tolist() == GOLDEN_KEYS
    assert band_keys(sig, 25, 10)[0] == np.int64(
        np.uint64(xxhash.xxh64_intdigest(np.arange(10, dtype="<u4").tobytes(), seed=0)).view(np.int64)
    )


def test_band_keys_mix_in_the_band_index() -> None:
    sig = np.full(250, 12345, np.uint32)  # every band holds the same rows
    keys = band_keys(sig, 25, 10)
    assert len(set(keys.tolist())) == 25
    other = sig.copy()
    other[15] = 1  # only band 1 differs
    changed = band_keys(other, 25, 10) != keys
    assert changed.tolist() == [i == 1 for i in range(25)]
    with pytest.raises(ValueError, match="bands"):
        band_keys(sig, 26, 10)


# --- short documents --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n", "one", "one two three four", "a.b(c, d)"])
def test_short_docs_have_empty_signature_and_no_keys(text: str) -> None:
    sig = SignatureBatch().signature(text)
    assert sig.shape == (0,) and sig.dtype == np.uint32
    keys = band_keys(sig, 25, 10)
    assert keys.shape == (0,) and keys.dtype == np.int64


def test_signature_rejects_wide_hashes() -> None:
    a, b = permutations(4, 0)
    with pytest.raises(ValueError, match="uint32"):
        signature(np.array([1, 2], dtype=np.int64), a, b)


def test_signatures_convenience_matches_one_by_one() -> None:
    texts = ["x y z w v u t", "", "alpha beta gamma delta epsilon"]
    params = MinHashParams(num_perm=64, threshold=0.5)
    batch = SignatureBatch(params)
    got = signatures(texts, params)
    assert [s.shape for s in got] == [(64,), (0,), (64,)]
    for text, sig in zip(texts, got, strict=True):
        assert np.array_equal(sig, batch.signature(text))
    assert batch.band_keys(got[0]).shape == (params.bands_rows()[0],)


# --- scale ------------------------------------------------------------------------------------


def test_signatures_follow_the_definition() -> None:
    rng = np.random.Generator(np.random.PCG64(3))
    hashes = np.unique(rng.integers(0, 2**32, size=5000, dtype=np.uint64)).astype(np.uint32)
    hashes[-1] = np.uint32(2**32 - 1)  # the largest hash: the product wraps, as the definition says
    a, b = permutations(20, 42)
    expected = reference_signature(hashes, a, b)
    assert np.array_equal(signature(hashes, a, b), expected)
    # Many texts in one matrix, one without shingles.
    owners = np.sort(rng.integers(0, 40, size=hashes.size))
    owners[owners == 7] = 8  # text 7 has no shingle
    matrix = signature_matrix(owners, hashes, 41, a, b)
    for text in (0, 8, 39):
        assert np.array_equal(matrix[text], reference_signature(hashes[owners == text], a, b))
    assert (matrix[7] == 2**32 - 1).all()


def test_large_doc_is_exact() -> None:
    rng = np.random.Generator(np.random.PCG64(11))
    vocab = [f"name{i}" for i in range(20_000)]
    text = code_like([vocab[i] for i in rng.integers(0, len(vocab), size=200_000)], rng)
    a, b = permutations(250, 42)
    hashes = shingle_hashes(text, 5, 5)
    sig = signature(hashes, a, b)
    assert hashes.size > 190_000
    # Three permutations, checked in numpy.
    for i in rng.choice(250, size=3, replace=False):
        assert sig[i] == ((hashes.astype(np.uint64) * a[i] + b[i]) >> np.uint64(32)).min()
