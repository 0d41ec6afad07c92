"""An email detector in the spirit of BigCode's regex-only PII detector (Stack v2 spec §4.5).

Choices, each against a false positive that is common in source code:

* A local part is needed and must start the token (a lookbehind rejects letters, digits and
  `_ . % + - @` before it), so Python/Java decorators (`@app.route`, `@Override`), npm scopes
  (`@babel/core`) and CSS at-rules (`@media`) never match, and a match never starts mid-word.
* Local part: ASCII letters, digits and `_ % + -`, with single dots only between runs; it may
  not end in `-`. Quotes, `= / # : \\` and brackets are delimiters, as in BigCode's regex, so the
  quoted or URL-embedded address (`mailto:a@b.org`, `<a@b.org>`, `"a@b.org"`) is matched alone.
* Domain: 1 to 10 labels of ASCII letters, digits and inner hyphens (at most 63 characters),
  then a dot and a TLD of 2 to 63 letters or an `xn--` punycode TLD. The required dot-TLD rejects
  `user@localhost`, `git@host`, `pkg@latest`; letters-only TLDs reject versions (`react@18.2.0`)
  and IP addresses (`root@10.0.0.1`, not an email).
* A domain starting with `<digits>x.` is rejected: retina asset names (`icon@2x.png`).
* Nothing word-like may follow the TLD, nor `.<alnum>`, so `a@b.co.uk1` or `x@y.comment` are not
  cut short into a shorter "email"; nor `(` or `[`, which mark a method call or an index on a
  matrix product (`q@k.transpose(1)`, `a@b.data[0]`), never an address in prose.

Accepted false positives: matrix products written without spaces whose right operand is an
attribute chain (`x@self.weight`), as with BigCode's regex. Internationalised (non-ASCII) local
parts and domains are not matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starbuild.clean.decontaminate import DecontaminationConfig

_LOCAL_RUN = r"[A-Za-z0-9_%+\-]*[A-Za-z0-9_%+]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9\-]{1,59})"

EMAIL = re.compile(
    rf"(?<![\w.%+\-@])"
    rf"{_LOCAL_RUN}(?:\.{_LOCAL_RUN})*"
    rf"@(?!\d+x\.)"
    rf"(?:{_LABEL}\.){{1,10}}{_TLD}"
    rf"(?![\w\-@(\[]|\.[A-Za-z0-9])"
)


@dataclass(frozen=True)
class CleanConfig:
    """The `clean` config section."""

    # What every email address is replaced by.
    email_placeholder: str
    # Benchmark decontamination (Stack v2 spec §5), run before redaction, on the original content.
    decontamination: DecontaminationConfig


def find_emails(text: str) -> list[str]:
    """Every email address the detector finds in `text`, in order."""
    return [match.group(0) for match in EMAIL.finditer(text)]


def redact_emails(text: str, placeholder: str) -> tuple[str, int]:
    """`text` with every email replaced by `placeholder`, and the number replaced."""
    # A function replacement keeps backslashes in the placeholder literal.
    return EMAIL.subn(lambda _match: placeholder, text)
