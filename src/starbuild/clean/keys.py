"""Secret keys, found as BigCode found them (spec §4.5): Yelp's detect-secrets plugins and filters, then
the gibberish test and the hash exclusions; plus the base64 bodies of PEM private keys.

detect-secrets runs in-process: the plugin objects and filter functions are built once per process
(`scanner`) and called line by line, as `detect_secrets.core.scan` does for a file, without writing the
file anywhere. Only lines that can hold a hit are scanned: a regex plugin's lines are those its own
patterns touch when run over the whole text, an entropy plugin's those holding a quoted run of its
charset long enough to pass its entropy limit (entropy above L bits needs more than 2**L distinct
characters); the slow regex patterns are first gated by a literal or a short regex every match
contains (GATES). A file without candidates costs a few fast whole-text searches
(bench/bench_clean.py: about 10x faster than every plugin on every line, with identical output).

Differences from BigCode's `keys_detection.py`, each for a measured miss or false positive
(tests/test_pii.py):

* Unquoted values of config lines (`KEY=value`, `key: value` in .env/.ini/.yaml/.properties/shell
  files) are also scanned as if quoted, as detect-secrets' config and YAML transformers do; BigCode
  scanned a `.txt` copy and so missed `AWS_SECRET_ACCESS_KEY=…` in an env file.
* A hit of a vendor-format plugin (any but the two entropy plugins) whose value mixes letters and
  digits skips the gibberish test: with BigCode's own big.model the test drops 19% of AWS access
  keys and 16% of Stripe keys (their prefixes `akia`, `sklive` are pronounceable and the random tail is
  short). Letters-only values (a word such as `ASIANCUISINERESTAURA`) still take it.
* A hit is widened to the whole token it sits in (base64url characters) before it is judged, so a
  Stripe key longer than the plugin's 24 characters, a JWT whose signature the plugin's lazy pattern
  leaves out, and a GitHub token (the plugin's value is its capture group, the `ghp` prefix alone) are
  judged and redacted whole.
* A hex-only token shorter than 32 characters is no key: in real code these are ids, colours and short
  hashes (a generated schema package alone gave 2,400 such "keys" in 3,000 files); hex secrets (GitHub
  classic, Datadog, Twilio, Sentry) are 32 or longer.
* The hash words are configurable and include git's (commit, rev) besides sha/md5/hash/byte;
  lengths 32/40/64/128 (with BigCode's words, 55 of the 200 planted commit-id files, `rev: …`,
  `"commit": "…"`, were given a key). The file-level rule counts `sha` only as a word (sha, sha1, SHA-256: not
  "shall", "shape", "marshal"), so a licence header does not switch key detection off.
* PEM private keys: BigCode removed PrivateKeyDetector, which flags only the `BEGIN … PRIVATE KEY` line
  (words, never gibberish); here the base64 body between the BEGIN and END markers is one KEY span.
"""

from __future__ import annotations

import bisect
import functools
import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import BasePlugin
from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
from detect_secrets.util.inject import get_injectable_variables

from starbuild.clean.gibberish import is_gibberish

# Characters that continue a key token to the right: widening stops at anything else.
_TOKEN_TAIL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_=-")
# Files whose unquoted `key = value` lines are configuration, not code (by name or extension).
CONFIG_SUFFIXES = (".env", ".ini", ".cfg", ".conf", ".properties", ".yaml", ".yml", ".sh", ".bash", ".zsh",
                   ".envrc", ".toml", ".txt")
CONFIG_NAMES = frozenset({"dockerfile", "makefile", "credentials", "config", "environment"})
CONFIG_PREFIXES = (".env", "dockerfile")
# `KEY=value`, `key: value`, `export KEY=value`, `ENV KEY=value`, `- KEY=value`: an unquoted value to the
# end of the line (a trailing comment allowed).
_CONFIG_LINE = re.compile(
    r"^(?P<head>\s*(?:export\s+|ENV\s+|-\s+)?[A-Za-z_][\w.\-]*\s*(?:=|:)\s*)(?P<value>[^\s'\"#]+)\s*(?:#.*)?$"
)
_PEM = re.compile(
    r"-----BEGIN (?P<kind>(?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----(?P<body>[A-Za-z0-9+/=\s\\\"',:\-]{64,}?)"
    r"-----END (?P=kind)PRIVATE KEY(?: BLOCK)?-----"
)
_PEM_HEADER = re.compile(r"^[A-Za-z\-]+: .*$", re.MULTILINE)
_PEM_LEAD = re.compile(r"(?:\s|\\n|[\"'])+")
_PEM_TRAIL = re.compile(r"(?:\s|\\n|[\"'])+$")
_SHA_WORD = re.compile(r"sha(?:-?\d+)?(?![a-z])")
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True)
class KeyRules:
    """What the key detector runs and keeps: the `clean.pii` settings it reads."""

    plugins: tuple[str, ...]
    filters: tuple[str, ...]
    gibberish_limit: float
    min_chars: int
    hash_words: tuple[str, ...]
    hash_lengths: tuple[int, ...]
    hash_mention_ratio: float
    trust_vendor_formats: bool
    hex_min_chars: int


@dataclass(frozen=True)
class Gate:
    """A cheap test that every match of a plugin pattern passes: when it fails on a text, the pattern is not run.

    A literal (`in`) or a regex, on the text or, for a case-insensitive pattern, on its lowercase.
    """

    test: str
    regex: bool = False
    lower: bool = False

    def passes(self, text: str, lowered: str) -> bool:
        """True when the pattern could match `text`."""
        target = lowered if self.lower else text
        if not self.regex:
            return self.test in target
        return _compiled(self.test).search(target) is not None


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """`pattern`, compiled once."""
    return re.compile(pattern)


_ASSIGNED = r"['\"]?\]? *(?:=|:|:=|=>| +|::) *['\"]?"
# Per plugin, one gate (or None) per denylist pattern, in order. The slow patterns are those opening with a
# lookbehind or an alternation, which defeat the regex engine's first-character scan: gated, the 18
# plugins cost a few fast scans of a file instead of 30 slow ones. Each gate is a part every match has.
GATES: dict[str, tuple[Gate | None, ...]] = {
    "ArtifactoryDetector": (Gate(r"AKC[a-zA-Z0-9]{10}", regex=True), Gate(r"AP[\dABCDEF][a-zA-Z0-9]{8}", regex=True)),
    "AWSKeyDetector": (None, Gate("aws", lower=True)),
    "CloudantDetector": (
        Gate(r"cl(?:oudant|ou)?[_-]?(?:api)?(?:key|pw|pass|token)", regex=True, lower=True),
        Gate(r"cl(?:oudant|ou)?[_-]?(?:api)?(?:key|pw|pass|token)", regex=True, lower=True),
        Gate("cloudant.com", lower=True),
        Gate("cloudant.com", lower=True),
    ),
    "IbmCloudIamDetector": (Gate(rf"(?:key|pwd|password|pass|token){_ASSIGNED}[a-z0-9_\-]{{44}}", regex=True,
                                 lower=True),),
    "IbmCosHmacDetector": (Gate(r"secret[-_]?(?:access)?[-_]?key", regex=True, lower=True),),
    "MailchimpDetector": (Gate(r"-us\d", regex=True),),
    "NpmDetector": (Gate("_authToken"),),
    "SlackDetector": (Gate("xox", lower=True), Gate("hooks.slack.com", lower=True)),
    "SoftlayerDetector": (Gate(r"(?:softlayer|sl)[_-]?(?:api)?[_-]?(?:key|pwd|pass|token)", regex=True, lower=True),
                          Gate("softlayer", lower=True)),
    "StripeDetector": (Gate("k_live_"),),
}


@dataclass(frozen=True)
class Scanner:
    """The detect-secrets plugins and filters, built once per process."""

    plugins: tuple[BasePlugin, ...]
    # Each filter with the names of its parameters (a subset of secret, line, plugin), as detect-secrets injects them.
    filters: tuple[tuple[Callable[..., bool], tuple[str, ...]], ...]
    # Per plugin: the patterns whose whole-text matches mark the lines to scan, each with its gate.
    prefilters: tuple[tuple[tuple[re.Pattern[str], Gate | None], ...], ...]


def entropy_prefilter(plugin: HighEntropyStringsPlugin) -> re.Pattern[str]:
    """A quoted run of the plugin's charset long enough to exceed its entropy limit (2**limit distinct chars)."""
    least = int(2**plugin.entropy_limit) + 1
    return re.compile(rf"(['\"])[{re.escape(plugin.charset)}]{{{least},}}\1")


@functools.cache
def scanner(plugin_names: tuple[str, ...], filter_paths: tuple[str, ...]) -> Scanner:
    """The named plugins (detect-secrets class names) and filters (import paths), instantiated once."""
    classes = {cls.__name__: cls for cls in get_mapping_from_secret_type_to_class().values()}
    unknown = sorted(set(plugin_names) - set(classes))
    if unknown:
        raise ValueError(f"pii.key_plugins: unknown detect-secrets plugins {unknown}; choose from {sorted(classes)}")
    plugins = tuple(classes[name]() for name in plugin_names)
    prefilters = tuple(prefilter(p) for p in plugins)
    return Scanner(plugins, tuple(load_filter(path) for path in filter_paths), prefilters)


def prefilter(plugin: BasePlugin) -> tuple[tuple[re.Pattern[str], Gate | None], ...]:
    """The patterns that mark a plugin's candidate lines, with their gates (none if the denylist changed)."""
    if isinstance(plugin, HighEntropyStringsPlugin):
        return ((entropy_prefilter(plugin), None),)
    patterns = tuple(plugin.denylist)
    gates = GATES.get(type(plugin).__name__, ())
    if len(gates) != len(patterns):
        gates = (None,) * len(patterns)
    return tuple(zip(patterns, gates, strict=True))


def load_filter(path: str) -> tuple[Callable[..., bool], tuple[str, ...]]:
    """The detect-secrets filter function at the dotted `path`, and its parameter names."""
    module, _, name = path.rpartition(".")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"pii.key_filters: no filter function {path!r}") from err
    params = tuple(get_injectable_variables(function))
    if not set(params) <= {"secret", "line", "plugin"}:
        raise ValueError(f"pii.key_filters: {path} needs {params}; only secret, line and plugin are given")
    return function, params


def is_config_file(path: str) -> bool:
    """True when `path` names a configuration file, whose unquoted values are literals."""
    name = path.rsplit("/", 1)[-1].lower()
    return name in CONFIG_NAMES or name.endswith(CONFIG_SUFFIXES) or name.startswith(CONFIG_PREFIXES)


class Lines:
    """A text's lines and the offset where each starts."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    @functools.cached_property
    def lowered(self) -> str:
        """The text in lowercase, for the gates of case-insensitive patterns."""
        return self.text.lower()

    def index(self, offset: int) -> int:
        """The number of the line holding `offset`."""
        return bisect.bisect_right(self.starts, offset) - 1

    def line(self, number: int) -> str:
        """Line `number`, without its newline."""
        end = self.starts[number + 1] - 1 if number + 1 < len(self.starts) else len(self.text)
        return self.text[self.starts[number]:end]


def candidate_lines(lines: Lines, patterns: tuple[tuple[re.Pattern[str], Gate | None], ...]) -> list[int]:
    """Every line a whole-text match of `patterns` touches (from its start to its end), sorted."""
    found: set[int] = set()
    for pattern, gate in patterns:
        if gate is not None and not gate.passes(lines.text, lines.lowered):
            continue
        for match in pattern.finditer(lines.text):
            found.update(range(lines.index(match.start()), lines.index(match.end()) + 1))
    return sorted(found)


def quoted_config_value(line: str) -> str | None:
    """A config line with its unquoted value put in quotes (as detect-secrets' transformers do), else None."""
    match = _CONFIG_LINE.match(line)
    if match is None:
        return None
    return f'{match.group("head")}"{match.group("value")}"'


def config_view(lines: Lines) -> Lines | None:
    """The text with every config line's unquoted value quoted (same line count), or None if nothing changes."""
    changed = False
    out = []
    for number in range(len(lines.starts)):
        line = lines.line(number)
        quoted = quoted_config_value(line.rstrip())
        changed = changed or quoted is not None
        out.append(line if quoted is None else quoted)
    return Lines("\n".join(out)) if changed else None


def plugin_hits(scan: Scanner, lines: Lines, config: bool) -> Iterator[tuple[str, int, BasePlugin]]:
    """(value, line number, plugin) for every hit that passes the detect-secrets filters."""
    # A config file is also scanned with its unquoted values quoted: they are literals, as quoted ones in code.
    views = [lines] + ([view] if config and (view := config_view(lines)) is not None else [])
    for plugin, prefilter in zip(scan.plugins, scan.prefilters, strict=True):
        for view in views:
            for number in candidate_lines(view, prefilter):
                line = view.line(number).rstrip()
                for secret in plugin.analyze_line(filename="file", line=line, line_number=number + 1):
                    value = secret.secret_value
                    if value and not filtered(scan, value, line, plugin):
                        yield value, number, plugin


def filtered(scan: Scanner, secret: str, line: str, plugin: BasePlugin) -> bool:
    """True when a configured detect-secrets filter drops `secret` (UUIDs, ids, templates, sequences)."""
    given = {"secret": secret, "line": line, "plugin": plugin}
    return any(fn(**{name: given[name] for name in params}) for fn, params in scan.filters)


def looks_like_hash(value: str, line: str, rules: KeyRules) -> bool:
    """A digest, not a key: a hash length, and a hash word on the same line."""
    lowered = line.lower()
    return len(value) in rules.hash_lengths and any(word in lowered for word in rules.hash_words)


def file_has_hashes(text: str, ratio: float) -> bool:
    """BigCode's file rule: `sha` (as a word) or `hash` mentioned more often than `ratio` of the lines."""
    lowered = text.lower()
    threshold = int(ratio * text.count("\n"))
    return len(_SHA_WORD.findall(lowered)) > threshold or lowered.count("hash") > threshold


def is_key(value: str, plugin: BasePlugin | None, rules: KeyRules) -> bool:
    """§4.4's KEY acceptance: longer than 8 characters and gibberish (vendor formats with digits exempt);
    a hex-only token at least `hex_min_chars` long (shorter ones are ids, colours, short hashes)."""
    if len(value) < rules.min_chars or (len(value) < rules.hex_min_chars and _HEX.fullmatch(value)):
        return False
    vendor = plugin is not None and not isinstance(plugin, HighEntropyStringsPlugin)
    if rules.trust_vendor_formats and vendor and any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
        return True
    return is_gibberish(value, rules.gibberish_limit)


def widen(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of the whole key token around text[start:end]: alphanumerics before, `[A-Za-z0-9_=-]` after.

    Not `+ /` (a key in a URL path would take the path with it), nor `=` before (`KEY=AKIA…`); a JWT's
    dots join its segments.
    """
    while start > 0 and text[start - 1].isascii() and text[start - 1].isalnum():
        start -= 1
    jwt = text.startswith("eyJ", start)
    while end < len(text):
        char = text[end]
        # A JWT's dot continues the token when a token character follows it.
        if char not in _TOKEN_TAIL and not (jwt and char == "." and text[end + 1:end + 2] in _TOKEN_TAIL):
            break
        end += 1
    return start, end


def occurrences(text: str, value: str) -> Iterator[int]:
    """Every offset where `value` occurs in `text`, left to right, not overlapping."""
    at = text.find(value)
    while at != -1:
        yield at
        at = text.find(value, at + len(value))


def pem_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) of the base64 body of every PEM private key block (its Proc-Type/DEK-Info headers kept)."""
    spans = []
    if "PRIVATE KEY" not in text:
        return spans
    for match in _PEM.finditer(text):
        start, end = match.span("body")
        headers = list(_PEM_HEADER.finditer(text, start, end))
        if headers:
            start = headers[-1].end()
        # Trim the whitespace, `\n` escapes and quotes around the body: they are layout, not key.
        lead = _PEM_LEAD.match(text, start, end)
        start = lead.end() if lead else start
        trail = _PEM_TRAIL.search(text, start, end)
        end = trail.start() if trail else end
        if end - start >= 64:
            spans.append((start, end))
    return spans


def find_keys(text: str, rules: KeyRules, path: str = "") -> list[tuple[int, int, str]]:
    """(start, end, token) of every secret key in `text`; `path` says whether it is a config file.

    Every occurrence of a plugin's value is widened to its whole token (the GitHub plugin's value is only
    its `ghp` prefix) and the token is judged: not a hash on its line, long enough, gibberish.
    """
    spans = {(start, end, text[start:end]) for start, end in pem_spans(text)}
    pem_only = sorted(spans)
    lines = Lines(text)
    scan = scanner(rules.plugins, rules.filters)
    # A value (and a token) is judged once per kind of plugin: a vendor plugin's hit may pass where an
    # entropy plugin's hit of the same string failed the gibberish test.
    seen: set[tuple[str, bool]] = set()
    verdicts: dict[tuple[str, bool], bool] = {}
    hashes: bool | None = None
    for value, _number, plugin in plugin_hits(scan, lines, is_config_file(path)):
        vendor = not isinstance(plugin, HighEntropyStringsPlugin)
        if (value, vendor) in seen:
            continue
        seen.add((value, vendor))
        for at in occurrences(text, value):
            start, end = widen(text, at, at + len(value))
            token = text[start:end]
            if (token, vendor) not in verdicts:
                line = lines.line(lines.index(start))
                verdicts[token, vendor] = not looks_like_hash(token, line, rules) and is_key(token, plugin, rules)
            if not verdicts[token, vendor]:
                continue
            if hashes is None:
                # Computed once, and only for a file with a key.
                hashes = file_has_hashes(text, rules.hash_mention_ratio)
            if hashes:
                return pem_only
            spans.add((start, end, token))
    return sorted(spans)
