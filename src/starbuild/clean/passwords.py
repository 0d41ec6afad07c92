"""Passwords: the literal value given to a password-like key in code or configuration.

BigCode found passwords with its NER model only (StarPII, §4.3); this regex rule covers the one
unambiguous form, an assignment, and aims at precision first. The rule, in full:

* The key is a name (quoted or not) ending in `password`, `passwd` or `passphrase` (any case, any
  prefix: `DB_PASSWORD`, `spring.datasource.password`, `adminPassword`, `"passwd"`), or in a
  `pass`/`pwd`/`pw` segment after a credential word (`db_pass`, `SMTP_PWD`, `mysql-pass`; a bare
  `pass`/`pwd` is a render pass or the working directory). Names ending otherwise (`password_hash`,
  `passwordField`) are other things.
* Then an assignment: `=`, `:`, `:=`, `=>` (not `==`, `!=`, `<=`, `>=`), then the value:
  - a quoted string literal (`'…'`, `"…"`, `` `…` ``), anywhere in a line (code, JSON, YAML, kwargs);
  - in a configuration file (.env, .ini, .yaml, .properties, shell, Dockerfile: see `keys.is_config_file`),
    also an unquoted value running to the end of the line (a trailing `#` comment allowed);
  - in XML, the text of a `<password>…</password>` element.
* The value is kept only if it is not a placeholder: no whitespace (messages and labels have it), no
  template or reference syntax (`${VAR}`, `{{ x }}`, `%(x)s`, `$VAR`, `<…>`, `ENC(…)`, `!vault`), not one
  of `password_placeholders` (`changeme`, `password`, `none`, …) nor a run of one character (`xxxx`,
  `****`), not a capitalised word (a label: `Passwort`), not a letters-only name holding "passw"
  (`challengePassword`, `new_password`), and 4 to 128 characters (§4.4 skips spans of 3 or fewer).
  Code references (`os.environ[...]`, `getpass()`, `config.password`) are never quoted literals, so
  they never match.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from starbuild.clean.keys import is_config_file
from starbuild.clean.textlines import lines_matching

# Words that make a short `pass`/`pwd`/`pw` segment a credential (`db_pass`), where alone it is not.
_CREDENTIAL = (
    r"(?:db|database|user|admin|root|mysql|pg|postgres|redis|smtp|mail|email|ftp|sftp|ldap|proxy|auth|login"
    r"|sql|mongo|rabbitmq|amqp|ssh|vnc|wifi|app|account|api|bind|master|keystore|truststore)"
)
# A key name ending in a password word (the lookbehinds below make it start at a token boundary).
_NAME = rf"(?i:[\w$@.\-]*?(?:pass(?:word|wd|phrase)|{_CREDENTIAL}[_.\-]?(?:pass|pwd|pw))\d?)"
# `=`, `:`, `:=`, `=>`, on one line; not `==`, `::`.
_ASSIGN = r"[ \t]*(?:=>|:=|=(?!=)|:(?!:))[ \t]*"
QUOTED = re.compile(
    rf"(?<![\w.\-$@])(?P<q0>['\"`]?)(?P<name>{_NAME})(?P=q0)\]?{_ASSIGN}"
    r"(?P<q>['\"`])(?P<value>[^'\"`\r\n\\]{1,200})(?P=q)"
)
UNQUOTED = re.compile(
    rf"^[ \t]*(?:export[ \t]+|ENV[ \t]+|-[ \t]+)?(?P<q0>['\"]?)(?P<name>{_NAME})(?P=q0){_ASSIGN}"
    r"(?P<value>[^\s'\"`#;,]{1,200})[ \t]*(?:#.*)?$",
    re.MULTILINE,
)
XML = re.compile(r"<(?P<tag>[\w:.\-]*(?i:password|passwd))>(?P<value>[^<\s]{1,200})</(?P=tag)>")
# Template, variable and reference syntax, and validation rules (`required|min:8`): not a literal password.
_REFERENCE = re.compile(
    r"\$\{|\{\{|\}\}|%\(|%s|^\$\w|^<.*>$|^ENC\(|^!|^\{.*\}$|^%[\w.]+%$|^(?:required|nullable|sometimes)\b"
)
_HINT = re.compile(r"(?i)pass|pw")
_NAMELIKE = re.compile(r"[A-Za-z_\-]+")


def is_placeholder(value: str, placeholders: frozenset[str]) -> bool:
    """True when the value stands for a password rather than being one."""
    if len(value) < 4 or len(value) > 128 or any(c.isspace() for c in value):
        return True
    word = value.rstrip(":.!?")
    if _REFERENCE.search(value) or word.lower() in placeholders or len(set(value)) == 1:
        return True
    # A capitalised or non-ASCII word is a label (`Passwort`, `Contraseña`, `密码`), not a password; a name
    # made of letters around "password" is a field or constant name (`challengePassword`, `new_password`).
    if word.isalpha() and (not word.isascii() or (word[0].isupper() and word[1:].islower())):
        return True
    return _NAMELIKE.fullmatch(word) is not None and "passw" in word.lower()


def hint_lines(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every line holding `pass` or `pw` (any case): the only lines a password can be on."""
    return lines_matching(_HINT, text)


def find_passwords(text: str, placeholders: frozenset[str], path: str = "") -> Iterator[tuple[int, int, str]]:
    """(start, end, value) of every password value in `text`; `path` says whether it is a config file."""
    patterns = [QUOTED, XML] + ([UNQUOTED] if is_config_file(path) else [])
    for start, end in hint_lines(text):
        line = text[start:end]
        for pattern in patterns:
            for match in pattern.finditer(line):
                value = match.group("value")
                if not is_placeholder(value, placeholders):
                    yield start + match.start("value"), start + match.end("value"), value
