"""Jupyter notebooks in The Stack v2's two formats (spec §6.3): real nbformat notebooks in, exact texts out."""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import nbformat
import nbformat.v3 as v3
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from starbuild.notebooks.convert import (
    REASONS,
    NotebookError,
    jupyter_script,
    jupyter_structured,
    notebook_language,
    read_notebook,
)
from starbuild.special_tokens import (
    EMPTY_OUTPUT,
    END_OF_TEXT,
    JUPYTER_CODE,
    JUPYTER_OUTPUT,
    JUPYTER_SCRIPT,
    JUPYTER_START,
    JUPYTER_TEXT,
)

PYTHON = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
          "language_info": {"name": "python", "version": "3.11.4"}}
R = {"kernelspec": {"name": "ir", "language": "R", "display_name": "R"}, "language_info": {"name": "R"}}


def notebook_text(cells: list[Any], metadata: dict[str, Any] | None = None) -> str:
    """A v4 notebook's JSON, as it would be stored in a repository."""
    return nbformat.writes(new_notebook(cells=cells, metadata=PYTHON if metadata is None else metadata))


def read(cells: list[Any], metadata: dict[str, Any] | None = None) -> nbformat.NotebookNode:
    return read_notebook(notebook_text(cells, metadata))


def reason_of(text: str) -> str:
    with pytest.raises(NotebookError) as caught:
        read_notebook(text)
    return caught.value.reason


def stdout(text: str) -> Any:
    return new_output("stream", name="stdout", text=text)


def result(text: str) -> Any:
    return new_output("execute_result", data={"text/plain": text}, execution_count=1)


# --- Jupyter structured ---------------------------------------------------------------------------------


def test_structured_merges_runs_and_keeps_the_last_output_of_a_code_run() -> None:
    nb = read([
        new_markdown_cell("# Loading"),
        new_markdown_cell("We read the *data*."),
        new_code_cell("import math", outputs=[stdout("imported\n")]),
        new_code_cell("math.pi", outputs=[result("3.141592653589793")]),
        new_markdown_cell("Then we assign."),
        new_code_cell("x = 1"),
    ])
    assert jupyter_structured(nb) == (
        JUPYTER_START
        + JUPYTER_TEXT + "# Loading\n\nWe read the *data*."
        + JUPYTER_CODE + "import math\nmath.pi"
        + JUPYTER_OUTPUT + "3.141592653589793"
        + JUPYTER_TEXT + "Then we assign."
        + JUPYTER_CODE + "x = 1"
        + JUPYTER_OUTPUT + EMPTY_OUTPUT
    )


def test_structured_does_not_end_with_end_of_text() -> None:
    text = jupyter_structured(read([new_code_cell("print(1)", outputs=[stdout("1\n")])]))
    assert text == JUPYTER_START + JUPYTER_CODE + "print(1)" + JUPYTER_OUTPUT + "1"
    assert END_OF_TEXT not in text


def test_a_code_run_takes_the_last_cells_outputs_even_when_it_has_none() -> None:
    nb = read([new_code_cell("a = 1", outputs=[stdout("first\n")]), new_code_cell("b = 2")])
    assert jupyter_structured(nb) == JUPYTER_START + JUPYTER_CODE + "a = 1\nb = 2" + JUPYTER_OUTPUT + EMPTY_OUTPUT


def test_raw_and_blank_cells_are_skipped_without_splitting_a_run() -> None:
    nb = read([
        new_code_cell("a = 1"),
        new_raw_cell(".. rst directive"),
        new_markdown_cell("   \n"),
        new_code_cell("a", outputs=[result("1")]),
    ])
    assert jupyter_structured(nb) == JUPYTER_START + JUPYTER_CODE + "a = 1\na" + JUPYTER_OUTPUT + "1"


ERROR = new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                   traceback=["\x1b[0;31m---------\x1b[0m", "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"])
PNG = new_output("display_data", data={"image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBg"})


@pytest.mark.parametrize(("outputs", "expected"), [
    pytest.param([stdout("loss 0.25\n")], "loss 0.25", id="stream"),
    pytest.param([new_output("stream", name="stderr", text="warning: slow\n")], "warning: slow", id="stderr"),
    pytest.param([result("array([1, 2])")], "array([1, 2])", id="execute_result"),
    pytest.param([new_output("display_data", data={"text/plain": "<Figure size 640x480>", "image/png": "AAAA"})],
                 "<Figure size 640x480>", id="display_data_text_plain"),
    pytest.param([PNG], EMPTY_OUTPUT, id="display_data_image_only"),
    pytest.param([new_output("display_data", data={"text/html": "<b>hi</b>"})], EMPTY_OUTPUT, id="html_only"),
    pytest.param([ERROR], "ZeroDivisionError: division by zero", id="error"),
    pytest.param([new_output("stream", name="stdout", text="\x1b[31mred\x1b[0m\n")], "red", id="ansi_removed"),
    pytest.param([stdout("epoch 1"), stdout(" done\n")], "epoch 1 done", id="stream_chunks_concatenated"),
    pytest.param([stdout("\n\n")], EMPTY_OUTPUT, id="whitespace_only"),
    pytest.param([stdout("a\n"), result("2"), PNG, ERROR], "a\n2\nZeroDivisionError: division by zero",
                 id="several_joined"),
])
def test_output_text(outputs: list[Any], expected: str) -> None:
    nb = read([new_code_cell("run()", outputs=outputs)])
    assert jupyter_structured(nb) == JUPYTER_START + JUPYTER_CODE + "run()" + JUPYTER_OUTPUT + expected


@pytest.mark.parametrize("metadata", [R, {"kernelspec": {"name": "julia", "language": "julia", "display_name": "J"}},
                                      {}])
def test_structured_is_for_python_notebooks_only(metadata: dict[str, Any]) -> None:
    nb = read([new_code_cell("x <- 1")], metadata)
    with pytest.raises(NotebookError) as caught:
        jupyter_structured(nb)
    assert caught.value.reason == "not_python"


def test_structured_of_a_notebook_with_only_raw_text() -> None:
    with pytest.raises(NotebookError) as caught:
        jupyter_structured(read([new_raw_cell("only raw")]))
    assert caught.value.reason == "empty_notebook"


# --- Jupyter scripts ------------------------------------------------------------------------------------


def test_python_script_is_jupytexts_percent_format_without_header_or_metadata() -> None:
    metadata = {**PYTHON, "jupytext": {"text_representation": {"extension": ".py", "format_name": "light",
                                                               "jupytext_version": "1.14.0"}}}
    nb = read([
        new_markdown_cell("# Title\nSome *text*."),
        new_code_cell("%matplotlib inline\nimport math", metadata={"tags": ["parameters"]},
                      outputs=[stdout("ignored\n")]),
        new_code_cell("def f(x):\n    return x\n\n\nf(math.pi)"),
    ], metadata)
    script = jupyter_script(nb)
    assert script == (
        JUPYTER_SCRIPT
        + "# %% [markdown]\n"
        "# # Title\n"
        "# Some *text*.\n"
        "\n"
        "# %%\n"
        "# %matplotlib inline\n"
        "import math\n"
        "\n"
        "\n"  # jupytext's PEP 8 spacing: two blank lines before a cell that starts with a def
        "# %%\n"
        "def f(x):\n"
        "    return x\n"
        "\n"
        "\n"
        "f(math.pi)\n"
    )
    assert jupyter_script(nb) == script
    assert jupyter_script(read_notebook(notebook_text(nb.cells, metadata))) == script
    assert "jupytext" not in script and "kernelspec" not in script and "ignored" not in script
    assert END_OF_TEXT not in script


def test_script_does_not_change_the_notebook() -> None:
    nb = read([new_markdown_cell("Text"), new_code_cell("x = 1", metadata={"tags": ["t"]})])
    before = json.dumps(nb, sort_keys=True)
    jupyter_script(nb)
    jupyter_structured(nb)
    assert json.dumps(nb, sort_keys=True) == before


def test_r_notebook_becomes_an_r_script() -> None:
    nb = read([new_markdown_cell("Means"), new_code_cell("x <- c(1, 2)\nmean(x)")], R)
    assert notebook_language(nb) == "r"
    assert jupyter_script(nb) == JUPYTER_SCRIPT + "# %% [markdown]\n# Means\n\n# %%\nx <- c(1, 2)\nmean(x)\n"


@pytest.mark.parametrize("metadata", [
    {"kernelspec": {"name": "cobol", "language": "cobol", "display_name": "COBOL"}},
    {},
])
def test_script_of_a_language_jupytext_does_not_know(metadata: dict[str, Any]) -> None:
    with pytest.raises(NotebookError) as caught:
        jupyter_script(read([new_code_cell("DISPLAY 'HI'.")], metadata))
    assert caught.value.reason == "unsupported_language"


@pytest.mark.parametrize(("metadata", "expected"), [
    (PYTHON, "python"),
    ({"kernelspec": {"name": "ir", "language": "R", "display_name": "R"}}, "r"),
    ({"language_info": {"name": "Julia"}}, "julia"),
    ({"kernelspec": {"name": "x", "language": "Scala", "display_name": "x"}, "language_info": {"name": "java"}},
     "scala"),
    ({}, None),
])
def test_notebook_language(metadata: dict[str, Any], expected: str | None) -> None:
    assert notebook_language(read([new_code_cell("1")], metadata)) == expected


# --- reading --------------------------------------------------------------------------------------------


def v3_notebook() -> str:
    cells = [
        v3.new_text_cell("markdown", source="An *old* notebook"),
        v3.new_code_cell(input="print(1)", language="python", outputs=[v3.new_output("stream", output_text="1\n")]),
        v3.new_code_cell(input="1 + 1", language="python", prompt_number=2,
                         outputs=[v3.new_output("pyout", output_text="2", prompt_number=2)]),
    ]
    return nbformat.writes(v3.new_notebook(name="old", worksheets=[v3.new_worksheet(cells=cells)]), version=3)


def test_a_v3_notebook_is_upgraded_and_keeps_its_cells_language() -> None:
    text = v3_notebook()
    assert json.loads(text)["nbformat"] == 3
    nb = read_notebook(text)
    assert nb.nbformat == 4
    assert notebook_language(nb) == "python"
    assert jupyter_structured(nb) == (
        JUPYTER_START + JUPYTER_TEXT + "An *old* notebook" + JUPYTER_CODE + "print(1)\n1 + 1" + JUPYTER_OUTPUT + "2"
    )
    assert jupyter_script(nb) == (
        JUPYTER_SCRIPT + "# %% [markdown]\n# An *old* notebook\n\n# %%\nprint(1)\n\n# %%\n1 + 1\n"
    )
    # nbformat's upgrade draws random cell ids; reading stays a pure function of the text.
    assert read_notebook(text) == nb


def test_missing_cell_ids_are_repaired_quietly(caplog: pytest.LogCaptureFixture) -> None:
    raw = json.loads(notebook_text([new_markdown_cell("A"), new_code_cell("b = 1"), new_code_cell("b")]))
    for cell in raw["cells"]:
        del cell["id"]
    raw["cells"][2]["id"] = "not a valid id!"
    with warnings.catch_warnings(), caplog.at_level(logging.DEBUG):
        warnings.simplefilter("error")
        nb = read_notebook(json.dumps(raw))
    assert [cell.id for cell in nb.cells] == ["cell-0", "cell-1", "cell-2"]
    assert caplog.records == []
    assert jupyter_structured(nb) == (
        JUPYTER_START + JUPYTER_TEXT + "A" + JUPYTER_CODE + "b = 1\nb" + JUPYTER_OUTPUT + EMPTY_OUTPUT
    )


def test_metadata_the_schema_rejects_is_dropped_not_fatal() -> None:
    raw = json.loads(notebook_text([new_code_cell("x = 1")]))
    del raw["metadata"]["kernelspec"]["display_name"]
    nb = read_notebook(json.dumps(raw))
    assert "kernelspec" not in nb.metadata
    assert notebook_language(nb) == "python"


def test_corrupt_json() -> None:
    text = notebook_text([new_code_cell("x = 1")])
    assert reason_of(text[: len(text) // 2]) == "invalid_json"
    assert reason_of("") == "invalid_json"
    assert reason_of("[" * 100_000) == "invalid_json"


@pytest.mark.parametrize("text", [
    '{"name": "left-pad", "version": "1.3.0"}',
    "[1, 2, 3]",
    '"a string"',
    '{"nbformat": 4, "metadata": {}, "cells": []}',
    '{"nbformat": "4", "nbformat_minor": 5, "metadata": {}, "cells": []}',
    '{"nbformat": 9, "nbformat_minor": 0, "metadata": {}, "cells": []}',
    '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [42]}',
    '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "video", "source": "x"}]}',
    '{"nbformat": 3, "nbformat_minor": 0, "metadata": {}}',
])
def test_json_that_is_not_a_notebook(text: str) -> None:
    assert reason_of(text) == "invalid_notebook"


def test_no_cells_or_only_empty_cells() -> None:
    assert reason_of(notebook_text([])) == "empty_notebook"
    assert reason_of(notebook_text([new_code_cell(""), new_markdown_cell("  \n\t")])) == "empty_notebook"


def test_non_ascii_and_a_very_long_cell() -> None:
    long_code = "".join(f"values_{i} = {i} ** 2  # carré\n" for i in range(20_000))
    nb = read([new_markdown_cell("Données 数据 — résumé 🚀"), new_code_cell(long_code, outputs=[stdout("✓ fini\n")])])
    assert len(long_code) > 500_000
    assert jupyter_structured(nb) == (
        JUPYTER_START + JUPYTER_TEXT + "Données 数据 — résumé 🚀" + JUPYTER_CODE + long_code + JUPYTER_OUTPUT + "✓ fini"
    )
    script = jupyter_script(nb)
    assert script.startswith(JUPYTER_SCRIPT + "# %% [markdown]\n# Données 数据 — résumé 🚀\n\n# %%\nvalues_0 = 0 ** 2")
    assert long_code in script


def test_reasons() -> None:
    assert set(REASONS) == {"invalid_json", "invalid_notebook", "empty_notebook", "unsupported_language",
                            "not_python"}
    assert NotebookError("not_python").reason == "not_python"
    with pytest.raises(ValueError, match="unknown notebook reason"):
        NotebookError("too_big")
