"""The `clean` section's schema, and an email detector in the spirit of BigCode's regex-only PII detector
(Stack v2 spec §4.5). The other detectors are in `ips`, `keys`, `passwords` and `ner`; `redact` runs them.

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

import ipaddress
import re
from dataclasses import dataclass, field

from starbuild.clean.decontaminate import DecontaminationConfig
from starbuild.clean.malware import MalwareConfig

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


@dataclass
class PiiConfig:
    """The `clean.pii` section: replacements, and what the detectors accept (not frozen: Hydra merges into it).

    conf/clean/stack_v2.yaml says where each value comes from; these checks reject values that cannot work.
    """

    # BigCode's fixed pools; an IP address is replaced by a choice seeded by the file's blob_id.
    ipv4_replacements: list[str]
    ipv6_replacements: list[str]
    # Public addresses that are left alone.
    dns_servers: list[str]
    # Spans this short or shorter are never redacted (§4.4: length <= 3).
    max_skipped_chars: int
    # detect-secrets plugin class names and filter import paths.
    key_plugins: list[str]
    key_filters: list[str]
    # A key must be longer than this, and gibberish at this limit.
    key_max_skipped_chars: int
    gibberish_limit: float
    trust_vendor_formats: bool
    # A key that is all hex digits must be at least this long.
    hex_key_min_chars: int
    hash_words: list[str]
    hash_lengths: list[int]
    hash_mention_ratio: float
    # Characters around a version-like `x.x.x.x` searched for "dns"/"server".
    version_context_chars: int
    password_placeholders: list[str]
    # The NER model's window and the overlap between windows, in tokens.
    ner_window_tokens: int = 512
    ner_stride_tokens: int = 128
    # Where the NER model runs ("cpu", "cuda:0"); CPU keeps the output independent of the machine.
    ner_device: str = "cpu"
    # Entity types the NER model may add (its tags; AMBIGUOUS and USERNAME are never redacted).
    ner_tags: list[str] = field(default_factory=lambda: ["NAME", "EMAIL", "KEY", "PASSWORD", "IP_ADDRESS"])

    def __post_init__(self) -> None:
        for name, version in (("ipv4_replacements", 4), ("ipv6_replacements", 6)):
            pool = getattr(self, name)
            if not pool or any(_version(ip) != version for ip in pool):
                raise ValueError(f"{name} must be a non-empty list of IPv{version} addresses, got {pool}")
        if any(_version(ip) is None for ip in self.dns_servers):
            raise ValueError(f"dns_servers must be IP addresses, got {self.dns_servers}")
        if not 0 <= self.hash_mention_ratio <= 1 or self.gibberish_limit <= 0:
            raise ValueError("hash_mention_ratio must be in [0, 1] and gibberish_limit > 0")
        if min(self.max_skipped_chars, self.key_max_skipped_chars, self.version_context_chars,
               self.hex_key_min_chars) < 0:
            raise ValueError("max_skipped_chars, key_max_skipped_chars, version_context_chars, hex_key_min_chars "
                             "must be >= 0")
        if not 0 <= self.ner_stride_tokens < self.ner_window_tokens - 2:
            raise ValueError("ner_stride_tokens must be >= 0 and smaller than ner_window_tokens - 2")


def _version(text: str) -> int | None:
    """4 or 6 for an IP address, None for anything else."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


@dataclass(frozen=True)
class CleanConfig:
    """The `clean` config section."""

    # Benchmark decontamination (Stack v2 spec §5), run before redaction, on the original content.
    decontamination: DecontaminationConfig
    # The other PII detectors and their replacements (Stack v2 spec §4.4, §4.5).
    pii: PiiConfig
    # A local Hugging Face token-classification model (e.g. StarPII) whose spans are added to the regex
    # detectors'; None: regex detectors alone.
    ner_model: str | None = None
    # ClamAV scanning (Stack v2 spec §1.7), run first: matching files are removed.
    malware: MalwareConfig = field(default_factory=MalwareConfig)


def find_emails(text: str) -> list[str]:
    """Every email address the detector finds in `text`, in order."""
    return [match.group(0) for match in EMAIL.finditer(text)]
