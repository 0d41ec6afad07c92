"""The `mixture` stage: metrics/mixture.json, the training mixture in tokens, per source and language.

A stage of its own, after `tokenizer` and beside `tokenize`: tokens need the trained tokenizer (trained on
format's output), and counting code per language before the caps needs data/clean and the mixture params.
Inside `tokenize` those deps would repack the tokens, and so retrain the model, whenever the counting or
the caps' reading changed; here a change reruns this count alone.

Per source: documents and tokens of each split of data/docs (the stream as packed, copies included),
its share of the train tokens, and per language the tokens before and after the caps and after epochs.
Code's languages are its files' contents alone (documents add paths, separators and FIM tokens), before
the caps (every file of data/clean), within them, and times the train copies of the file's repository;
other sources' are their documents, whose first copy is both before and after the caps (caps are for
code). A document's language comes from data/docs (conf/mixture/ `language`; `(none)` for issues and pull
requests).
"""

from __future__ import annotations

import logging
from typing import Any

from starbuild.core import layout, schemas
from starbuild.core.stage import StageContext, StageError
from starbuild.format.mixture import MixtureConfig, language_cuts
from starbuild.mixture.counts import DocumentCounts, Tally, code_copies, code_languages
from starbuild.special_tokens import END_OF_TEXT
from starbuild.tokenizer import bpe

log = logging.getLogger(__name__)


def _languages(tallies: dict[str, Tally]) -> dict[str, dict[str, int]]:
    return {language: tallies[language].as_dict() for language in sorted(tallies)}


def _total(tallies: dict[str, Tally]) -> dict[str, int]:
    total = Tally()
    for tally in tallies.values():
        total.add(tally)
    return total.as_dict()


def run_mixture(ctx: StageContext) -> None:
    """Write metrics/mixture.json from data/docs, data/clean and models/tokenizer."""
    mixture = ctx.section("mixture", MixtureConfig)
    seed = int(ctx.cfg.seed)
    with ctx.reading(layout.TOKENIZER / layout.TOKENIZER_FILE) as path:
        tokenizer = bpe.load_tokenizer(path.parent)
    if tokenizer.token_to_id(END_OF_TEXT) is None:
        raise StageError(f"{layout.TOKENIZER} lacks {END_OF_TEXT}; run `dvc repro tokenizer`")
    streamed = mixture.ordered()
    code = next((name for name, source in streamed if source.is_code), None)

    docs = {split: ctx.input_shards(layout.DOCS / split, schemas.DOCS) for split in layout.SPLITS}
    counts = DocumentCounts(code)
    for split, shards in docs.items():
        counts.add_shards(tokenizer, split, shards)
    languages: dict[str, dict[str, Tally]] = {name: dict(counts.languages[name]) for name, _ in streamed}
    if code is not None:
        clean = ctx.input_shards(layout.CLEAN, schemas.CLEAN)
        cuts = language_cuts(clean, mixture.language_caps, seed)
        languages[code] = code_languages(tokenizer, clean, cuts, seed, code_copies(docs[layout.TRAIN], code))

    train_tokens = sum(counts.splits[name][layout.TRAIN].tokens for name, _ in streamed)
    sources: dict[str, Any] = {}
    for name, source in streamed:
        train, val = counts.splits[name][layout.TRAIN], counts.splits[name][layout.VAL]
        sources[name] = {
            "epochs": source.epochs,
            "train_docs": train.docs,
            "train_tokens": train.tokens,
            "val_docs": val.docs,
            "val_tokens": val.tokens,
            "share": round(train.tokens / train_tokens, 6) if train_tokens else 0.0,
            "tokens": _total(languages[name]),
            "languages": _languages(languages[name]),
        }
    overall: dict[str, Tally] = {}
    for tallies in languages.values():
        for language, tally in tallies.items():
            overall.setdefault(language, Tally()).add(tally)
    metrics = {"vocab_size": tokenizer.get_vocab_size(), "train_tokens": train_tokens, "sources": sources,
               "languages": _languages(overall)}
    log.info("train stream: %d tokens; %s", train_tokens,
             ", ".join(f"{name} {entry['share']:.1%}" for name, entry in sources.items()))
    ctx.write_metrics(metrics)
