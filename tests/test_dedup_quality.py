"""Near dedup quality on real code: pair precision and recall against exact-Jaccard labels (tests/near_dup_corpus)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from starbuild.dedup.stage import run_dedup
from tests import near_dup_corpus as ndc
from tests.factories import stage_context, with_overrides

MIN_PRECISION = 0.95
MIN_RECALL = 0.9


def predicted_pairs(root: Path, cfg: DictConfig, corpus: ndc.Corpus, **dedup: object) -> set[ndc.Pair]:
    """Run the dedup stage on the corpus under root and return the pairs sharing a near_dup cluster."""
    ndc.write_input(root, corpus.docs, per_shard=70)
    run_dedup(stage_context("dedup", with_overrides(cfg, dedup={"near_dup": True, **dedup}), root))
    return ndc.cluster_pairs(ndc.near_clusters(root, corpus.by_location()))


@pytest.fixture(scope="module")
def corpus() -> ndc.Corpus:
    return ndc.corpus()


@pytest.fixture(scope="module")
def unverified(tmp_path_factory, smoke_cfg, corpus) -> set[ndc.Pair]:
    """The pairs the default configuration (no exact check) puts in one cluster."""
    return predicted_pairs(tmp_path_factory.mktemp("unverified"), smoke_cfg, corpus)


def test_corpus_is_not_vacuous(corpus):
    # Enough planted duplicates to measure, some just under the threshold, every doc signed.
    assert len(corpus.true_pairs) >= 50
    assert any(score < ndc.THRESHOLD for score in corpus.similar.values())
    assert len(corpus.signed_ids) == len(corpus.docs)
    # Most pairs are of unrelated modules: ~150 families, not a handful of big ones.
    assert len({doc.family for doc in corpus.docs}) >= 100


def test_near_dedup_finds_the_planted_copies(corpus, unverified):
    found = ndc.score(unverified, corpus)
    print(f"\nnear dedup: {found}")
    assert found.precision >= MIN_PRECISION and found.recall >= MIN_RECALL, found
    # Unrelated stdlib modules never share a cluster: a pair across families is predicted only if truly similar.
    families = {doc.id: doc.family for doc in corpus.docs}
    assert not {p for p in unverified if families[p[0]] != families[p[1]] and p not in corpus.true_pairs}


def test_verify_is_at_least_as_precise(tmp_path, smoke_cfg, corpus, unverified):
    plain = ndc.score(unverified, corpus)
    checked = ndc.score(predicted_pairs(tmp_path, smoke_cfg, corpus, verify=True), corpus)
    print(f"\nunverified: {plain}\nverified:   {checked}")
    assert checked.precision >= plain.precision
    assert checked.precision >= MIN_PRECISION and checked.recall >= MIN_RECALL, checked
