"""StarCoder2's repository-context file-level fill-in-the-middle (spec §6.2), on characters.

A repository's document is a FIM candidate with probability `rate`; in a candidate, each file's chunk
(what follows its `<file_sep>`: `path\\ncode` with metadata, `code` without) is transformed with
probability `file_rate`, independently. A transformed chunk is cut at two uniform character positions
into prefix, middle and suffix and laid out as PSM, or with probability `spm_rate` as SPM (variant 2 of
the FIM paper, as BigCode's Megatron fork writes it):

- PSM: `<fim_prefix>prefix<fim_suffix>suffix<fim_middle>middle`
- SPM: `<fim_prefix><fim_suffix>suffix<fim_middle>prefix middle`

`<repo_name>REPO` is never transformed. BigCode's fork did this on the packed, detokenised context at
training time; doing it here, per document, with the document's own seeded generator, keeps every
document deterministic and lets the tokenizer see the FIM tokens.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from starbuild.special_tokens import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

PSM = "psm"
SPM = "spm"


@dataclass
class FimConfig:
    """The `format.fim` section: how often documents and files are transformed, and how (not frozen: Hydra
    merges conf/format/ into it)."""

    # Chance that a repository's document is a FIM candidate (StarCoder2: 0.5).
    rate: float = 0.5
    # Chance that each file of a candidate is transformed (BigCode's --fragment-fim-rate: 0.5).
    file_rate: float = 0.5
    # Chance that a transformed file is laid out SPM rather than PSM (BigCode's --fim-spm-rate: 0.5).
    spm_rate: float = 0.5

    def __post_init__(self) -> None:
        for name in ("rate", "file_rate", "spm_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"fim.{name} must be a number within [0, 1], got {value!r}")


def permute(chunk: str, rng: random.Random, spm_rate: float) -> tuple[str, str]:
    """`chunk` cut at two uniform character positions and laid out PSM or SPM; the layout used."""
    low, high = sorted(rng.randint(0, len(chunk)) for _ in range(2))
    prefix, middle, suffix = chunk[:low], chunk[low:high], chunk[high:]
    if rng.random() < spm_rate:
        return f"{FIM_PREFIX}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}{prefix}{middle}", SPM
    return f"{FIM_PREFIX}{prefix}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}{middle}", PSM


def apply_fim(chunks: list[str], rng: random.Random, cfg: FimConfig) -> tuple[list[str], list[str]]:
    """The file chunks of one document, some transformed; the layouts used, in file order."""
    if rng.random() >= cfg.rate:
        return chunks, []
    out, layouts = [], []
    for chunk in chunks:
        if rng.random() < cfg.file_rate:
            chunk, layout = permute(chunk, rng, cfg.spm_rate)
            layouts.append(layout)
        out.append(chunk)
    return out, layouts
