"""The visible text of an HTML file, as StarCoder1's HTML filter measured it.

BeautifulSoup's `html.parser`, `<script>` and `<style>` elements removed, then `get_text()`: what a
reader of the rendered page sees, counted in code points. Registered in DuckDB as a scalar function
so the `html` rule's SQL can call it on the rows it judges (DuckDB evaluates a CASE branch only on
the rows that take it, so other languages never reach the parser).
"""

from __future__ import annotations

import warnings

import duckdb
from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning

SQL_NAME = "html_visible_chars"


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


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Make `html_visible_chars(text)` callable in `con`'s SQL."""
    con.create_function(SQL_NAME, visible_chars, [duckdb.sqltype("VARCHAR")], duckdb.sqltype("BIGINT"))
