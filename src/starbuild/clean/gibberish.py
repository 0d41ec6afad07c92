"""Is a string gibberish? The character-bigram test BigCode applied to every secret-key candidate (spec §4.4, §4.5).

BigCode scored a candidate, lowercased, with a `gibberish-detector` model trained on Norvig's `big.txt`
(books and word lists, about 6 MB) at the package's default limit, 4.0: the mean negative log
probability of the candidate's letter bigrams must exceed it. `big.txt` is not available offline, so
this module trains the same kind of model (the package's own trainer, same charset `ascii_letters`,
same add-10 smoothing) on English prose that ships with the pinned interpreter: the topic help of
`pydoc_data.topics`, the text `help()` shows, which is CPython's Language Reference and library
documentation (465k characters, 311k letters; big.txt has about 4.9M letters). It is edited English
technical prose, not a word list, so its bigram frequencies are those of running text, like big.txt's,
and it names code (`__getattr__`, `AttributeError`) as code documentation does. Nothing else on the
machine is both pinned and prose: the OS's licence texts are not pinned, the stdlib's docstrings are
half identifiers (tried: no closer to big.model).

Compared with BigCode's published `big.model` on 15k strings (5k stdlib identifiers of 9+ characters,
5k random alphanumeric keys of 9-40 characters, 5k random hex strings), this model at limit 3.9 (conf:
`clean.pii.gibberish_limit`) calls 0.8% of identifiers gibberish (big.model at 4.0: 1.0%), 91% of the
random keys (93%) and 49% of the hex strings (47%); the two agree on 99.7%, 95% and 87% of them. The
limit is lower than BigCode's 4.0 because this smaller, more technical corpus gives random strings
slightly lower surprise.

The trained model is a data file next to this module (`gibberish.model.json`, 52x52 counts, ~20 kB),
loaded once per process. `python -m starbuild.clean.gibberish` retrains it; the result is byte-identical
for the same CPython version (recorded in the file).
"""

from __future__ import annotations

import argparse
import functools
import json
import string
import sys
from pathlib import Path

from gibberish_detector.detector import Detector
from gibberish_detector.model import Model
from gibberish_detector.trainer import train_on_content

MODEL_PATH = Path(__file__).with_name("gibberish.model.json")
# The charset of BigCode's big.model (the trainer's default); letters only, digits and symbols are skipped.
CHARSET = string.ascii_letters
SOURCE = "pydoc_data.topics"


def training_text() -> str:
    """The training corpus: every pydoc help topic, in sorted topic order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[name] for name in sorted(topics))


def python_version() -> str:
    """The interpreter version the corpus comes from (x.y.z): the corpus changes with it."""
    return ".".join(str(part) for part in sys.version_info[:3])


def train() -> Model:
    """A bigram model of the corpus, trained by gibberish-detector's own trainer."""
    return train_on_content(training_text(), CHARSET)


def serialize(model: Model) -> str:
    """The model file's text: gibberish-detector's format plus where it came from."""
    data = {**model.json(), "source": SOURCE, "python": python_version()}
    return json.dumps(data, indent=None, separators=(",", ":")) + "\n"


@functools.cache
def detector(limit: float) -> Detector:
    """The detector for `limit`, its model read once per process."""
    data = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    return Detector(Model.from_dict(data), limit)


def is_gibberish(text: str, limit: float) -> bool:
    """True when `text` (lowercased, as BigCode scored it) scores above `limit`."""
    return detector(limit).is_gibberish(text.lower())


def main(argv: list[str] | None = None) -> int:
    """Retrain the model into MODEL_PATH (or `--check` that the file is what training gives)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = serialize(train())
    if args.check:
        same = MODEL_PATH.read_text(encoding="utf-8") == text
        print(f"{MODEL_PATH}: {'up to date' if same else 'differs from a retrain'}")
        return 0 if same else 1
    MODEL_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {MODEL_PATH} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
