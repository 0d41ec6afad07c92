"""IPv4 and IPv6 addresses, found as BigCode's regex detector found them (spec §4.5), accepted as §4.4 says.

Detection: BigCode's patterns (octets 0-255; every compressed IPv6 form, IPv4-embedded and zone-indexed
ones included), with a delimiter needed on both sides. Its delimiters are whitespace and
`@ ? , ! ; : ' " ( ) .` plus CJK ideographs (`)` only on the left); here they are lookarounds, not
consumed, so `1.2.3.4,5.6.7.8` yields both, `)` ends an address too (`(93.184.216.34)`), and
`/ = [ ] < > { } |` are added on both sides so the host of `http://93.184.216.34/x`, `host=…` and
`[2001:4860::1]:443` is found.

Rejected, as BigCode did: no digit; one of its five date shapes (the whole match); version-like `x.x.x.x`
(three dots, seven characters) unless "dns" or "server" is within 100 characters; not parseable by
`ipaddress`. Added here: a match that is part of a longer dotted number (`1.2.3.4.5`, `v10.1.20.3.7`),
and any IPv4 shape within 40 characters after the word "version" (or "oid", "ObjectIdentifier") on its
line (`<version>2.10.3.1`, `ObjectIdentifier("2.5.29.15")`) or right after a version pin
(`pkg==4.2.10.1`), with the same dns/server exception.

Acceptance (§4.4, `is_public`): not private (`ipaddress`), not one of the 14 public DNS servers; also not
multicast, reserved, or shared (100.64/10), none of which names a host (netmasks such as 255.255.255.0
are reserved, and `f32::e` in Rust code is a reserved IPv6).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from starbuild.clean.textlines import lines_matching

_HEX = "[0-9a-fA-F]{1,4}"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_V4_TAIL = r"(?:(?:25[0-5]|(?:2[0-4]|1?[0-9])?[0-9])\.){3}(?:25[0-5]|(?:2[0-4]|1?[0-9])?[0-9])"
IPV6 = "|".join([
    rf"(?:{_HEX}:){{7}}{_HEX}",
    rf"(?:{_HEX}:){{1,7}}:",
    rf"(?:{_HEX}:){{1,6}}:{_HEX}",
    rf"(?:{_HEX}:){{1,5}}(?::{_HEX}){{1,2}}",
    rf"(?:{_HEX}:){{1,4}}(?::{_HEX}){{1,3}}",
    rf"(?:{_HEX}:){{1,3}}(?::{_HEX}){{1,4}}",
    rf"(?:{_HEX}:){{1,2}}(?::{_HEX}){{1,5}}",
    rf"{_HEX}:(?::{_HEX}){{1,6}}",
    rf":(?:(?::{_HEX}){{1,7}}|:)",
    r"fe80:(?::[0-9a-fA-F]{0,4}){0,4}%[0-9a-zA-Z]+",
    rf"::(?:ffff(?::0{{1,4}})?:)?{_V4_TAIL}",
    rf"(?:{_HEX}:){{1,4}}:{_V4_TAIL}",
])
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_DELIMITERS = rf"\s@?,!;:'\"().{_CJK}/=\[\]<>{{}}|"
# An IPv6 alternative may not stop where the address goes on (`2600:bc1::ab74` of `2600:bc1::ab74:ac10:3ae1`:
# `:` is a delimiter), so the regex backtracks to the alternative that takes it whole.
IP = re.compile(rf"(?<![^{_DELIMITERS}])(?P<ip>{IPV4}|(?:{IPV6})(?![:.]?[0-9a-fA-F]))(?![^{_DELIMITERS}])")
# What every acceptable address contains (an IPv4's `d.ddd.ddd.d`; an IPv6's `h:h:`, `h::` or `::h`: with a
# digit, `::` alone is rejected), found far faster than IP, whose leading lookbehind defeats the regex
# engine's first-character scan. IP runs only on the lines holding it.
GATE = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d|[0-9a-fA-F]:[0-9a-fA-F]{0,4}:|::[0-9a-fA-F]")

# BigCode's five date shapes, matched against the whole candidate (\p{Pd} is spelled out: dash punctuation).
_DASH = ("\\-\u058a\u05be\u1400\u1806\u2010-\u2015\u2e17\u2e1a\u2e3a\u2e3b\u2e40\u301c\u3030\u30a0"
         "\ufe31\ufe32\ufe58\ufe63\uff0d")
DATES = [re.compile(pattern) for pattern in (
    rf"[1-2][0-9]{{3}}[{_DASH}/][1-2][0-9]{{3}}",  # yyyy-yyyy
    rf"[1-2][0-9]{{3}}[{_DASH}/.][0-3][0-9][{_DASH}/.][0-3][0-9]",  # yyyy-mm-dd
    rf"[0-3][0-9][{_DASH}/.][0-3][0-9][{_DASH}/.](?:[0-9]{{2}}|[1-2][0-9]{{3}})",  # dd-mm-yyyy
    rf"[0-3][0-9][{_DASH}/](?:[0-9]{{2}}|[1-2][0-9]{{3}})",  # mm-yyyy
    r"[1-2][0-9]{3}-[0-3][0-9]",  # yyyy-mm
)]
_SHARED = ipaddress.ip_network("100.64.0.0/10")
# How far before an address the word "version" makes it a version number (same line only).
_VERSION_REACH = 40
# Version pins (`pkg==4.2.10.1`).
_PINS = ("==", ">=", "<=", "~=", "!=")
# Words that make a dotted quad a version or an ASN.1 object identifier (`ObjectIdentifier("2.5.29.15")`).
_LABEL = re.compile(r"(?i)version|(?<![a-z])oids?(?![a-z])|object_?identifier")


def is_date(candidate: str) -> bool:
    """True when the whole candidate has one of BigCode's date shapes.

    BigCode tested a prefix (`re.match`), which rejects public addresses whose first three octets read as
    dd.mm.yy (27.26.87.121: 1.5% of random public IPv4s); a whole four-octet address is never a date.
    """
    return any(pattern.fullmatch(candidate) for pattern in DATES)


def is_version(candidate: str, text: str, start: int, end: int, context: int) -> bool:
    """A version number or OID: `x.x.x.x` (3 dots, 7 characters; BigCode's rule) or any IPv4 shape after a
    _LABEL word or a version pin on its line, unless "dns" or "server" is within `context` characters."""
    line_start = text.rfind("\n", max(0, start - _VERSION_REACH), start) + 1
    before = text[max(line_start, start - _VERSION_REACH):start]
    labelled = _LABEL.search(before) is not None or before.endswith(_PINS)
    if not labelled and (candidate.count(".") != 3 or len(candidate) != 7):
        return False
    around = text[max(0, start - context):end + context].lower()
    return "dns" not in around and "server" not in around


def in_longer_number(text: str, start: int, end: int) -> bool:
    """True when the match continues a dotted number on either side (`1.2.3.4.5`)."""
    before = text[max(0, start - 2):start]
    after = text[end:end + 2]
    return (len(before) == 2 and before[1] == "." and before[0].isdigit()) or (
        len(after) == 2 and after[0] == "." and after[1].isdigit())


def parse(candidate: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, or None when `ipaddress` cannot parse it (e.g. `01.2.3.4`)."""
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address, dns_servers: frozenset[str]) -> bool:
    """§4.4's acceptance: a host on the internet, not private, not a popular DNS server."""
    if address.is_private or address.is_multicast or address.is_reserved or address.is_unspecified or (
            address.version == 6 and address.is_site_local):
        return False
    if address.version == 4 and address in _SHARED:
        return False
    return str(address) not in dns_servers


def candidate_lines(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every line holding a GATE match: the only lines an acceptable address can be on."""
    return lines_matching(GATE, text)


def find_ips(text: str, dns_servers: frozenset[str], context: int = 100) -> Iterator[tuple[int, int, str, int]]:
    """(start, end, address, version) of every accepted public IP address in `text`."""
    for line_start, line_end in candidate_lines(text):
        yield from line_ips(text, line_start, line_end, dns_servers, context)


def line_ips(text: str, start: int, end: int, dns_servers: frozenset[str],
             context: int) -> Iterator[tuple[int, int, str, int]]:
    """The accepted addresses in text[start:end] (one line: an address never spans two)."""
    for match in IP.finditer(text, start, end):
        candidate = match.group("ip")
        begin, finish = match.span("ip")
        if not any(c.isdigit() for c in candidate) or is_date(candidate):
            continue
        if is_version(candidate, text, begin, finish, context) or in_longer_number(text, begin, finish):
            continue
        address = parse(candidate)
        if address is not None and is_public(address, dns_servers):
            yield begin, finish, candidate, address.version
