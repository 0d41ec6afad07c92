"""Bytes to UTF-8 text as The Stack v2 did: UTF-8 when it is, else a detected encoding, recorded."""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

UTF8 = "UTF-8"
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True)
class Decoded:
    """A file's text and the encoding its bytes were in (The Stack v2 `src_encoding`)."""

    text: str
    encoding: str


def decode(data: bytes, encodings: Sequence[str]) -> Decoded | None:
    """The text of `data`: UTF-8, UTF-16 with a BOM, else the best of `encodings` by charset-normalizer.

    `encodings` are Python codec names, most likely first.

    None when nothing decodes it cleanly, or the text holds NUL characters (binary data, as BigCode dropped).
    """
    if data.startswith(_UTF16_BOMS):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            return None
        return Decoded(text, "UTF-16") if "\0" not in text else None
    if b"\0" in data:
        return None
    try:
        return Decoded(data.decode("utf-8"), UTF8)
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # here: most files are UTF-8, and each pull worker imports this

    matches = list(from_bytes(data, cp_isolation=list(encodings)))
    if not matches:
        return None
    # Short files often fit several encodings equally well: the configured order breaks the tie, so a
    # Western file is not read as Cyrillic by chance.
    best = min((m.chaos, -m.coherence) for m in matches)
    rank = {encoding_name(e): i for i, e in enumerate(encodings)}
    tied = [m for m in matches if (m.chaos, -m.coherence) == best]
    match = min(tied, key=lambda m: rank.get(encoding_name(m.encoding), len(rank)))
    return Decoded(str(match), encoding_name(match.encoding))


@cache
def encoding_name(codec: str) -> str:
    """The canonical upper-case name of a Python codec (`latin_1` → `ISO8859-1`), as `src_encoding` holds it."""
    return codecs.lookup(codec).name.upper()
