"""The optional NER hook: a local Hugging Face token-classification model (StarPII, spec §4.3) run over a file.

The model is loaded once per process with `transformers`' token-classification pipeline, aggregation
"simple" (adjacent B-/I- tokens of one type make one span, as BigCode's inference did), and run on
windows of `window` tokens that overlap by `stride` tokens, so a file of any length is covered and each
span comes back as character offsets into the file. What is redacted is decided by `redact` with §4.4's
acceptance rules, as for the regex detectors.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def load(path: str, window: int, device: str) -> Any:
    """The token-classification pipeline for the model at `path`, windows of `window` tokens."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(path, model_max_length=window)
    if not tokenizer.is_fast:
        raise ValueError(f"clean.ner_model: {path} has no fast tokenizer; windows need its offsets")
    model = AutoModelForTokenClassification.from_pretrained(path)
    model.eval()
    return pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple",
                    device=device)


def entities(text: str, path: str, window: int, stride: int, device: str = "cpu") -> list[tuple[int, int, str]]:
    """(start, end, tag) of every entity the model finds in `text`, sorted by position."""
    if not text.strip():
        return []
    found = load(path, window, device)(text, stride=stride)
    return sorted({(int(e["start"]), int(e["end"]), str(e["entity_group"])) for e in found})
