"""PII redaction of a file and of a shard: run every detector, keep non-overlapping spans, replace them.

Detectors: emails (`pii.EMAIL`), IPv4/IPv6 (`ips`), secret keys (`keys`: detect-secrets, PEM bodies),
passwords (`passwords`), and, when `clean.ner_model` is set, the NER model's spans (`ner`), each kept
only under §4.4's rule for its type. Overlapping spans are resolved left to right: the earlier start
wins, then the type ranked first in PRIORITY, then the longer span (a password's value that is also a
high-entropy key is a password; a token in a URL's userinfo, `https://x:ghp_…@github.com`, is a key, not
the start of an email address).

Replacement (§4.4): `<EMAIL>`, `<KEY>`, `<PASSWORD>`, `<NAME>` (special tokens of the tokenizer); an IP
address becomes a random choice from its family's pool. The same value gets the same replacement
everywhere in a file, and the random choices come from an RNG seeded with the file's `blob_id`, so the
output depends on the file alone, not on its shard, its neighbours or the worker.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from starbuild import special_tokens
from starbuild.clean import ips, keys, ner, passwords
from starbuild.clean.pii import EMAIL, CleanConfig
from starbuild.core import schemas

log = logging.getLogger(__name__)

# Entity types, as counted in metrics/clean.json's `pii`.
KINDS = ("email", "ipv4", "ipv6", "key", "password", "name")
# What a pathological file can make a detector raise (deep recursion in a regex engine, a value a parser
# rejects, no memory for a huge line).
INPUT_ERRORS = (RecursionError, ValueError, UnicodeError, OverflowError, MemoryError)
# Which of two spans with the same start is kept (lower first).
PRIORITY = {"password": 0, "key": 1, "email": 2, "ipv4": 3, "ipv6": 3, "name": 4}
# The fixed replacements (IP addresses get one from a pool instead).
PLACEHOLDERS = {"email": special_tokens.EMAIL, "key": special_tokens.KEY, "password": special_tokens.PASSWORD,
                "name": special_tokens.NAME}


@dataclass(frozen=True)
class Span:
    """One piece of PII: text[start:end], its type, and the text itself."""

    start: int
    end: int
    kind: str
    value: str


@dataclass(frozen=True)
class Rules:
    """Everything redaction needs, hashable and picklable: built once from the `clean` section."""

    ipv4_pool: tuple[str, ...]
    ipv6_pool: tuple[str, ...]
    dns_servers: frozenset[str]
    max_skipped_chars: int
    version_context_chars: int
    key_rules: keys.KeyRules
    password_placeholders: frozenset[str]
    ner_model: str | None
    ner_window: int
    ner_stride: int
    ner_device: str
    ner_tags: frozenset[str]


def rules_from(cfg: CleanConfig, root: Path | None = None) -> Rules:
    """The redaction rules of a `clean` section (a relative `ner_model` is under `root`)."""
    pii = cfg.pii
    model = cfg.ner_model
    if model is not None and root is not None and not Path(model).is_absolute():
        model = str(Path(root) / model)
    key_rules = keys.KeyRules(
        plugins=tuple(pii.key_plugins), filters=tuple(pii.key_filters), gibberish_limit=pii.gibberish_limit,
        min_chars=pii.key_max_skipped_chars + 1, hash_words=tuple(w.lower() for w in pii.hash_words),
        hash_lengths=tuple(pii.hash_lengths), hash_mention_ratio=pii.hash_mention_ratio,
        trust_vendor_formats=pii.trust_vendor_formats, hex_min_chars=pii.hex_key_min_chars,
    )
    return Rules(
        ipv4_pool=tuple(pii.ipv4_replacements), ipv6_pool=tuple(pii.ipv6_replacements),
        dns_servers=frozenset(pii.dns_servers), max_skipped_chars=pii.max_skipped_chars,
        version_context_chars=pii.version_context_chars, key_rules=key_rules,
        password_placeholders=frozenset(p.lower() for p in pii.password_placeholders), ner_model=model,
        ner_window=pii.ner_window_tokens, ner_stride=pii.ner_stride_tokens, ner_device=pii.ner_device,
        ner_tags=frozenset(pii.ner_tags),
    )


def check(rules: Rules) -> None:
    """Fail now, in the main process, on unknown plugins or filters, or a missing NER model (ValueError)."""
    keys.scanner(rules.key_rules.plugins, rules.key_rules.filters)
    if rules.ner_model is not None and not Path(rules.ner_model).is_dir():
        raise ValueError(f"ner_model: no model directory at {rules.ner_model}; set a local path or null")


def email_spans(text: str) -> list[Span]:
    """Every email address."""
    if "@" not in text:
        return []
    return [Span(m.start(), m.end(), "email", m.group(0)) for m in EMAIL.finditer(text)]


def ip_spans(text: str, rules: Rules) -> list[Span]:
    """Every public IP address that §4.4 accepts."""
    found = ips.find_ips(text, rules.dns_servers, rules.version_context_chars)
    return [Span(start, end, f"ipv{version}", value) for start, end, value, version in found]


def key_spans(text: str, rules: Rules, path: str) -> list[Span]:
    """Every secret key."""
    return [Span(start, end, "key", value) for start, end, value in keys.find_keys(text, rules.key_rules, path)]


def password_spans(text: str, rules: Rules, path: str) -> list[Span]:
    """Every password value."""
    found = passwords.find_passwords(text, rules.password_placeholders, path)
    return [Span(start, end, "password", value) for start, end, value in found]


def accept_ner(text: str, start: int, end: int, tag: str, rules: Rules) -> Span | None:
    """A model span as a Span, if §4.4's rule for its tag accepts it."""
    value = text[start:end]
    if tag not in rules.ner_tags or not value.strip():
        return None
    if tag == "NAME":
        return Span(start, end, "name", value) if len(value.split()) > 1 else None
    if tag == "KEY":
        return Span(start, end, "key", value) if keys.is_key(value, None, rules.key_rules) else None
    if tag == "IP_ADDRESS":
        address = ips.parse(value)
        if address is None or not ips.is_public(address, rules.dns_servers):
            return None
        return Span(start, end, f"ipv{address.version}", value)
    kind = {"EMAIL": "email", "PASSWORD": "password"}.get(tag)
    return Span(start, end, kind, value) if kind else None


def ner_spans(text: str, rules: Rules) -> list[Span]:
    """The NER model's accepted spans (none without a model)."""
    if rules.ner_model is None:
        return []
    found = ner.entities(text, rules.ner_model, rules.ner_window, rules.ner_stride, rules.ner_device)
    return [span for start, end, tag in found if (span := accept_ner(text, start, end, tag, rules))]


def detect(text: str, rules: Rules, path: str = "") -> list[Span]:
    """Every PII span in `text` that will be replaced: non-overlapping, longer than the skip length, sorted."""
    found = (email_spans(text) + ip_spans(text, rules) + key_spans(text, rules, path)
             + password_spans(text, rules, path) + ner_spans(text, rules))
    return resolve(span for span in found if span.end - span.start > rules.max_skipped_chars)


def resolve(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans: by start, then PRIORITY, then longest; a span overlapping a kept one is dropped."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, PRIORITY[s.kind], s.start - s.end, s.value)):
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


def replacements(spans: list[Span], rules: Rules, blob_id: str | None) -> list[str]:
    """The replacement of each span: one per distinct (kind, value), IPs drawn by an RNG seeded by `blob_id`."""
    # A str seed is hashed with SHA-512 by `random`: stable across processes and PYTHONHASHSEED.
    rng = random.Random(blob_id or "")
    chosen: dict[tuple[str, str], str] = {}
    for span in spans:
        key = (span.kind, span.value)
        if key not in chosen:
            if span.kind == "ipv4":
                chosen[key] = rng.choice(rules.ipv4_pool)
            elif span.kind == "ipv6":
                chosen[key] = rng.choice(rules.ipv6_pool)
            else:
                chosen[key] = PLACEHOLDERS[span.kind]
    return [chosen[(span.kind, span.value)] for span in spans]


def apply(text: str, spans: list[Span], new: list[str]) -> str:
    """`text` with each span replaced by its replacement."""
    parts, at = [], 0
    for span, replacement in zip(spans, new, strict=True):
        parts += [text[at:span.start], replacement]
        at = span.end
    parts.append(text[at:])
    return "".join(parts)


def redact_text(text: str, rules: Rules, blob_id: str | None = None, path: str = "") -> tuple[str, Counter[str]]:
    """`text` with its PII replaced, and the number of spans replaced per kind."""
    spans = detect(text, rules, path)
    if not spans:
        return text, Counter()
    return apply(text, spans, replacements(spans, rules, blob_id)), Counter(span.kind for span in spans)


@dataclass
class RedactedTexts:
    """What `redact_texts` made of a column of texts, row for row, and its totals."""

    # Each text with its PII replaced (None where the input was None or detection failed).
    texts: list[str | None]
    # Spans replaced per row (0 for a row whose detection failed).
    redactions: list[int]
    # False where detection failed: the row must be dropped, its PII could not be looked for.
    keep: list[bool]
    per_kind: Counter[str]
    # Rows with at least one email replaced.
    with_emails: int


def redact_texts(texts: Iterable[str | None], ids: Iterable[str | None], paths: Iterable[str | None],
                 rules: Rules) -> RedactedTexts:
    """Redact every text; `ids` seed each row's IP replacements, `paths` say which rows are config files.

    The one redaction loop of every table (code files, notebooks, issues, pull requests).
    """
    done = RedactedTexts([], [], [], Counter(), 0)
    for text, row_id, path in zip(texts, ids, paths, strict=True):
        if text is None:
            done.texts.append(None)
            done.redactions.append(0)
            done.keep.append(True)
            continue
        try:
            redacted, found = redact_text(text, rules, row_id, path or "")
        except INPUT_ERRORS as err:
            # One bad row is counted, never fatal (ARCHITECTURE.md); dropped, not kept unredacted: its PII
            # could not be looked for. Other exceptions are bugs, and stop the stage.
            log.warning("PII detection failed on %s (%s: %s); row dropped", row_id, type(err).__name__, err)
            redacted, found = None, None
        done.keep.append(found is not None)
        done.texts.append(redacted)
        done.redactions.append(sum(found.values()) if found else 0)
        done.per_kind.update(found or {})
        done.with_emails += bool(found and found["email"])
    return done


def per_kind(found: Counter[str]) -> dict[str, int]:
    """Spans replaced per kind, every kind of KINDS present (0 when none)."""
    return {kind: found[kind] for kind in KINDS}


def redact_table(table: pa.Table, rules: Rules) -> tuple[pa.Table, dict[str, object]]:
    """`table` with the PII in `content` replaced, files whose detection failed dropped, and the shard's counts."""
    columns = [table.column(name).to_pylist() for name in ("content", "blob_id", "path")]
    done = redact_texts(*columns, rules)
    # length_bytes stays the size of the original blob: it is a Stack v2 column describing the
    # SWH content (like blob_id, which also still names the unredacted bytes), not `content`.
    index = table.schema.get_field_index("content")
    table = table.set_column(index, "content", pa.array(done.texts, pa.large_string()))
    table = table.append_column("pii_redactions", pa.array(done.redactions, pa.int32()))
    table = table.filter(pa.array(done.keep, pa.bool_()))
    counts = {
        "pii": per_kind(done.per_kind),
        "pii_redacted": sum(done.per_kind.values()),
        "files_with_pii": sum(n > 0 for n in done.redactions),
        "files_pii_failed": done.keep.count(False),
        # The email-only counts of earlier runs, kept so their metrics stay comparable.
        "files_with_emails": done.with_emails,
        "emails_redacted": done.per_kind["email"],
    }
    return table.select(schemas.CLEAN.names).cast(schemas.CLEAN), counts
