"""Jupyter notebooks as The Stack v2's two training texts: Jupyter scripts and Jupyter structured (spec §6.3).

Spec §6.3 fixes the tokens and their order, that only Python notebooks become structured, that runs of
consecutive markdown cells and of consecutive code cells are merged, that a merged code run keeps only
its last output, and that an empty output becomes `<empty_output>`. What it leaves open is decided here:

- Merged cells: markdown sources are joined with "\\n\\n" (a paragraph break, so the markdown still
  reads as separate paragraphs), code sources with "\\n". Sources are otherwise kept byte for byte, and
  tokens are written with nothing between them and the text (as §6.3 writes them).
- Cells that never reach the text: raw cells, and cells whose source is blank. They are dropped before
  runs are formed, so they do not split a run.
- A run's output is the outputs of its last code cell, in order: `stream` text (consecutive chunks of one
  stream are concatenated), `text/plain` of `execute_result` and `display_data`, and `error` as
  `ename: evalue` (never the ANSI traceback). Images, HTML and every other MIME type are ignored. ANSI
  escape sequences are removed, each output loses its trailing newlines, and outputs are joined by "\\n".
- An empty output, i.e. no text at all or only whitespace, is exactly `<jupyter_output><empty_output>`.
- Python means a kernel language of `python`, `python2` or `python3`; a notebook that names no language
  is not Python (structured) and has no script language (scripts).
- Scripts are jupytext's percent format for the language's extension, without the notebook metadata
  header and cell metadata, so one notebook always gives the same bytes whatever jupytext version wrote it.

Neither format ends with `<|endoftext|>`: the document assembler appends it to every document.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Iterable
from typing import Any

import enry
import jupytext
import nbformat
from jupytext.languages import _SCRIPT_EXTENSIONS, same_language
from nbformat.reader import NotJSONError
from nbformat.validator import ValidationError

from starbuild.special_tokens import (
    EMPTY_OUTPUT,
    JUPYTER_CODE,
    JUPYTER_OUTPUT,
    JUPYTER_SCRIPT,
    JUPYTER_START,
    JUPYTER_TEXT,
)

REASONS = ("invalid_json", "invalid_notebook", "empty_notebook", "unsupported_language", "not_python")

PYTHON_LANGUAGES = frozenset({"python", "python2", "python3"})
# jupytext writes Python as `.py`; named here so "python3" kernels, which jupytext's table lacks, match too.
PYTHON_EXTENSION = ".py"
SCRIPT_FORMAT = "percent"
# Notebook and cell metadata vary with the editor and jupytext's version, not with the notebook's content.
SCRIPT_OPTIONS = {"notebook_metadata_filter": "-all", "cell_metadata_filter": "-all"}
# nbformat's schema for cell ids (v4.5+): ids outside it fail validation though they carry no content.
CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# CSI and other escape sequences: terminal colours in stream text are noise, not output.
ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
# What a malformed notebook makes nbformat's readers and converters raise (they index what they expect).
MALFORMED = (ValidationError, ValueError, TypeError, KeyError, AttributeError, IndexError)


class NotebookError(Exception):
    """A notebook that cannot be read or put in a format, with the reason it is counted under."""

    def __init__(self, reason: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown notebook reason {reason!r}; one of {REASONS}")
        super().__init__(reason)
        self.reason = reason


def read_notebook(text: str) -> nbformat.NotebookNode:
    """The notebook in `text` as nbformat v4 (older versions upgraded), validated against nbformat's schema."""
    # nbformat.reads() would only log a failed validation; its steps are run here so that it raises.
    # Warnings about things repaired below (missing cell ids) would otherwise print once per notebook.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            raw = nbformat.reader.reads(text)
        except (NotJSONError, RecursionError) as err:
            raise NotebookError("invalid_json") from err
        except MALFORMED as err:
            raise NotebookError("invalid_notebook") from err
        try:
            major = raw.get("nbformat") if isinstance(raw, dict) else None
            if not isinstance(major, int) or isinstance(major, bool):
                # Without the key nbformat guesses v1; any JSON object would then pass as a notebook.
                raise NotebookError("invalid_notebook")
            v3_language = _v3_language(raw) if major == 3 else None
            nb = nbformat.convert(raw, 4)
            if v3_language and not notebook_language(nb):
                nb.metadata["language_info"] = {"name": v3_language}
            _repair_cell_ids(nb, upgraded=major < 4)
            nb = _validated(nb)
        except MALFORMED as err:
            raise NotebookError("invalid_notebook") from err
    if not any(_has_text(cell) for cell in nb.cells):
        raise NotebookError("empty_notebook")
    return nb


def notebook_language(nb: nbformat.NotebookNode) -> str | None:
    """The kernel's language, lowercased: `kernelspec.language`, else `language_info.name`; None if neither."""
    metadata = nb.get("metadata") or {}
    for section, key in (("kernelspec", "language"), ("language_info", "name")):
        value = metadata.get(section)
        name = value.get(key) if isinstance(value, dict) else None
        if isinstance(name, str) and name.strip():
            return name.strip().lower()
    return None


def jupyter_script(nb: nbformat.NotebookNode) -> str:
    """`<jupyter_script>` + the notebook as a percent script of its language; no `<|endoftext|>` (added later)."""
    extension = _script_extension(notebook_language(nb))
    if extension is None:
        raise NotebookError("unsupported_language")
    fmt = {"extension": extension, "format_name": SCRIPT_FORMAT, **SCRIPT_OPTIONS}
    # jupytext warns about metadata it cannot represent; the filters above drop that metadata anyway.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        script = jupytext.writes(nb, fmt=fmt)
    return JUPYTER_SCRIPT + script


def script_language(nb: nbformat.NotebookNode) -> str | None:
    """go-enry's name for the language of the notebook's script (Python, R, Julia, …), None when it has none."""
    extension = _script_extension(notebook_language(nb))
    return enry.get_language_by_extension(f"notebook{extension}").language or None if extension else None


def jupyter_structured(nb: nbformat.NotebookNode) -> str:
    """`<jupyter_start>` + merged text, code and last-output runs (module docstring); no `<|endoftext|>`."""
    if notebook_language(nb) not in PYTHON_LANGUAGES:
        raise NotebookError("not_python")
    cells = [cell for cell in nb.cells if cell.get("cell_type") in ("markdown", "code") and _has_text(cell)]
    if not cells:
        raise NotebookError("empty_notebook")
    parts = [JUPYTER_START]
    for cell_type, group in itertools.groupby(cells, key=lambda cell: cell["cell_type"]):
        run = list(group)
        if cell_type == "markdown":
            parts += [JUPYTER_TEXT, "\n\n".join(cell["source"] for cell in run)]
        else:
            output = output_text(run[-1].get("outputs") or [])
            parts += [JUPYTER_CODE, "\n".join(cell["source"] for cell in run), JUPYTER_OUTPUT, output or EMPTY_OUTPUT]
    return "".join(parts)


def output_text(outputs: Iterable[Any]) -> str:
    """The text of a code cell's outputs ("" when none has text): streams, text/plain and errors, see above."""
    blocks: list[str] = []
    previous_stream = None
    for output in outputs:
        kind = output.get("output_type")
        stream = output.get("name") if kind == "stream" else None
        if kind == "stream":
            text = _text(output.get("text"))
        elif kind in ("execute_result", "display_data"):
            text = _text((output.get("data") or {}).get("text/plain"))
        elif kind == "error":
            name, value = _text(output.get("ename")), _text(output.get("evalue"))
            text = f"{name}: {value}" if value else name
        else:
            continue
        # A kernel flushes one stream in chunks (one output each) that are a single text on screen.
        if stream is not None and stream == previous_stream:
            blocks[-1] += text
        else:
            blocks.append(text)
        previous_stream = stream
    cleaned = (ANSI_ESCAPE.sub("", block).rstrip("\n") for block in blocks)
    text = "\n".join(block for block in cleaned if block.strip())
    return text if text.strip() else ""


def _text(value: Any) -> str:
    """A notebook string field, which the format also allows as a list of lines."""
    if isinstance(value, list):
        return "".join(str(line) for line in value)
    return value if isinstance(value, str) else ""


def _has_text(cell: Any) -> bool:
    """Whether a cell's source is more than whitespace."""
    return bool(_text(cell.get("source")).strip())


def _script_extension(language: str | None) -> str | None:
    """The script extension jupytext writes `language` with (its first in table order), None if it has none."""
    if language is None:
        return None
    if language in PYTHON_LANGUAGES:
        return PYTHON_EXTENSION
    # jupytext keeps its language table private; the pin in pyproject.toml keeps it the same table.
    for extension, entry in _SCRIPT_EXTENSIONS.items():
        if same_language(language, entry["language"]):
            return extension
    return None


def _v3_language(raw: Any) -> str | None:
    """The language v3 notebooks stored on each code cell, which nbformat's upgrade to v4 drops."""
    for worksheet in raw.get("worksheets") or []:
        for cell in worksheet.get("cells") or []:
            language = cell.get("language") if cell.get("cell_type") == "code" else None
            if isinstance(language, str) and language.strip():
                return language.strip()
    return None


def _repair_cell_ids(nb: nbformat.NotebookNode, upgraded: bool) -> None:
    """Give v4.5+ cells whose id is missing, malformed or repeated an id from their position."""
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        return
    # nbformat's own repair draws random ids, and its upgrade from v3 does too; ids from the position
    # keep read_notebook a pure function of the text.
    seen: set[str] = set()
    for index, cell in enumerate(nb["cells"]):
        cell_id = cell.get("id")
        if upgraded or not isinstance(cell_id, str) or not CELL_ID.fullmatch(cell_id) or cell_id in seen:
            cell_id = f"cell-{index}"
            while cell_id in seen:
                cell_id += "_"
            cell["id"] = cell_id
        seen.add(cell_id)


def _validated(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook if it passes nbformat's schema, else with its invalid metadata stripped if that passes."""
    try:
        nbformat.validate(nb)
        return nb
    except ValidationError:
        # Editors write metadata the schema rejects (a kernelspec without display_name, …); the cells are
        # what the formats use, so such a notebook is kept without that metadata.
        _, nb = nbformat.validator.normalize(nb, strip_invalid_metadata=True)
        nbformat.validate(nb)
        return nb
