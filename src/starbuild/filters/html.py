"""The visible text of an HTML file, as StarCoder1's HTML filter measured it.

BeautifulSoup's `html.parser`, `<script>` and `<style>` elements removed, then `get_text()`: what a
reader of the rendered page sees, counted in code points. `HtmlScan` runs it on the files of the
`html` rule's languages only, before the rule's SQL (a DuckDB Python function cost as much again).

Building BeautifulSoup's tree cost three quarters of the time, so `visible_chars` feeds the page to
BeautifulSoup's own parser class (its tokens, entities and empty-element handling unchanged) and keeps,
in place of the tree, the stack of open tag names BeautifulSoup keeps while it builds one: enough to
know which strings `get_text()` would return once the scripts and styles are gone. tests/test_filters.py
compares it with BeautifulSoup itself on generated and real pages.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
from bs4.builder._htmlparser import BeautifulSoupHTMLParser, HTMLParserTreeBuilder
from bs4.element import CData, NavigableString

# The column of HtmlScan.
COLUMN = "html_text_chars"
# The elements whose text is not visible: removed before get_text().
HIDDEN = ("script", "style")
# The string classes get_text() returns from a document (others: comments, doctypes, <template> text, ...).
_VISIBLE_STRINGS = (NavigableString, CData)
_BUILDER = HTMLParserTreeBuilder()


class _Opened(NamedTuple):
    """What BeautifulSoupHTMLParser reads of the tag `handle_starttag` returns."""

    is_empty_element: bool


class _VisibleTextCounter:
    """The part of a BeautifulSoup object its html.parser calls into, counting the code points of the strings
    `get_text()` returns after HIDDEN elements are extracted, with BeautifulSoup's rules for each string
    (whitespace-only strings outside <pre> and <textarea> become one space or newline; <template>, <rt>,
    <rp>, <script> and <style> give their strings classes get_text() leaves out)."""

    def __init__(self) -> None:
        self.builder = _BUILDER
        self.contains_replacement_characters = False
        self.visible = 0
        self._data: list[str] = []
        # Open tags from the document down; each entry (name, preserves whitespace, holds a string class, hidden).
        self._stack: list[tuple[str, bool, bool, bool]] = [(BeautifulSoup.ROOT_TAG_NAME, False, False, False)]
        self._open: Counter[str] = Counter()
        self._preserving = self._hiding = 0
        self._containers: list[str] = []

    def handle_starttag(self, name: str, namespace: Any, nsprefix: Any, attrs: Any, sourceline: Any = None,
                        sourcepos: Any = None, namespaces: Any = None) -> _Opened:
        self.endData()
        preserves = name in self.builder.preserve_whitespace_tags
        contains = name in self.builder.string_containers
        hides = name in HIDDEN
        self._stack.append((name, preserves, contains, hides))
        self._open[name] += 1
        self._preserving += preserves
        self._hiding += hides
        if contains:
            self._containers.append(name)
        return _Opened(name in self.builder.empty_element_tags)

    def handle_endtag(self, name: str, nsprefix: Any = None) -> None:
        self.endData()
        if name == BeautifulSoup.ROOT_TAG_NAME:
            return
        # BeautifulSoup's _popToTag: close every tag down to the innermost open `name`, if one is open.
        while len(self._stack) > 1 and self._open[name]:
            if self._pop() == name:
                break

    def _pop(self) -> str:
        name, preserves, contains, hides = self._stack.pop()
        self._open[name] -= 1
        self._preserving -= preserves
        self._hiding -= hides
        if contains:
            self._containers.pop()
        return name

    def handle_data(self, data: str) -> None:
        self._data.append(data)

    def endData(self, containerClass: type | None = None) -> None:  # noqa: N802, N803 (BeautifulSoup's names)
        if not self._data:
            return
        text = "".join(self._data)
        self._data = []
        if not self._preserving and not text.strip(BeautifulSoup.ASCII_SPACES):
            text = "\n" if "\n" in text else " "
        cls = containerClass or NavigableString
        if cls is NavigableString and self._containers:
            cls = self.builder.string_containers[self._containers[-1]]
        if cls in _VISIBLE_STRINGS and not self._hiding:
            self.visible += len(text)

    def finish(self) -> int:
        """The count once the whole page is parsed (BeautifulSoup's end of feeding)."""
        self.endData()
        return self.visible


def visible_chars(html: str) -> int:
    """Code points of `html`'s visible text; 0 when the parser gives up on it (the file then fails the rule)."""
    counter = _VisibleTextCounter()
    args, kwargs = _BUILDER.parser_args
    with warnings.catch_warnings():
        # A file that is only a URL or XML is still judged as HTML; bs4's advice about it is noise here.
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        try:
            parser = BeautifulSoupHTMLParser(counter, *args, **kwargs)
            parser.feed(html)
            parser.close()
        except Exception:  # html.parser raises on some malformed declarations; no text can be trusted then
            return 0
    return counter.finish()


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
