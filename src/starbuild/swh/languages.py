"""Language, vendored and generated flags of a file, from go-enry as The Stack v2 computed them.

go-enry (GitHub Linguist's rules and names, through `enry-python`, in-process) looks at the path
and the content: a `.h` file holding C++ is C++, `node_modules/…` is vendored, a protobuf output
or a minified bundle is generated. An empty answer becomes null, as in The Stack v2.
"""

from __future__ import annotations

from dataclasses import dataclass

import enry


@dataclass(frozen=True)
class FileKind:
    """What go-enry says of one file."""

    language: str | None
    is_vendor: bool
    is_generated: bool


def classify(path: str, content: bytes) -> FileKind:
    """go-enry's language (None when it has none), vendored and generated flags for `path` with `content`."""
    return FileKind(
        language=enry.get_language(path, content) or None,
        is_vendor=bool(enry.is_vendor(path)),
        is_generated=bool(enry.is_generated(path, content)),
    )
