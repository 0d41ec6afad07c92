"""The visible text of an HTML file, as StarCoder1's HTML filter measured it.

BeautifulSoup's `html.parser`, `<script>` and `<style>` elements removed, then `get_text()`: what a
reader of the rendered page sees, counted in code points. `HtmlScan` runs it on the files of the
`html` rule's languages only, before the rule's SQL (a DuckDB Python function cost as much again).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning

# The column of HtmlScan.
COLUMN = "html_text_chars"


def visible_chars(html: str) -> int:
    """Code points of `html`'s visible text; 0 when the parser gives up on it (the file then fails the rule)."""
    with warnings.catch_warnings():
        # A file that is only a URL or XML is still judged as HTML; bs4's advice about it is noise here.
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        try:
            soup = BeautifulSoup(html, "html.parser")
        except Exception:  # html.parser raises on some malformed declarations; no text can be trusted then
            return 0
    for element in soup(["script", "style"]):
        element.extract()
    return len(soup.get_text())


@dataclass(frozen=True)
class HtmlScan:
    """`visible_chars` of each text whose language is one of `languages`; null for the others."""

    languages: tuple[str, ...]

    def __call__(self, texts: pa.ChunkedArray, languages: pa.ChunkedArray) -> dict[str, pa.Array]:
        chosen = pc.fill_null(pc.is_in(languages, pa.array(self.languages, pa.string())), False)
        rows = pc.indices_nonzero(chosen)
        counts = [None] * len(texts)
        for row, text in zip(rows.to_pylist(), texts.take(rows).to_pylist(), strict=True):
            counts[row] = visible_chars(text or "")
        return {COLUMN: pa.array(counts, pa.int64())}

