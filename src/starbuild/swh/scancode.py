"""ScanCode license detection, as The Stack v2 ran it, for `source.license_detector: scancode`.

An optional extra (`pip install -c requirements.lock '.[scancode]'`, or `make setup-scancode`): about
700 MB installed and ~5 s to load its license index once per process, then about a millisecond a file.
"""

from __future__ import annotations

import functools
import time
from typing import Any

# BigCode passed `deadline=100` to ScanCode 32.0.8; since 32.x the deadline is an absolute epoch time, so a
# relative 100 returns no detections at all. This many seconds from now is what BigCode meant.
DEADLINE_S = 100.0
INSTALL_HINT = "install the scancode extra: `make setup-scancode` (pip install -c requirements.lock '.[scancode]')"


class ScanCodeMissing(ImportError):
    """`source.license_detector` is scancode but scancode-toolkit is not installed; the message names the fix."""


def require() -> None:
    """Fail in one line naming the fix when ScanCode cannot be imported."""
    _detector()


@functools.cache
def _detector() -> Any:
    try:
        from licensedcode.detection import detect_licenses
    except ImportError as err:
        raise ScanCodeMissing(f"source.license_detector is scancode but ScanCode is not importable ({err}); "
                              f"{INSTALL_HINT}, or set source.license_detector: askalono") from err
    return detect_licenses


def license_expressions(text: str) -> list[str]:
    """The SPDX license expressions ScanCode detects in `text`, in the order it finds them."""
    detections = _detector()(query_string=text, deadline=time.time() + DEADLINE_S)
    return [d.license_expression_spdx for d in detections if d.license_expression_spdx]
