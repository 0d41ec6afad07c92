"""Language of a file from its name, using GitHub Linguist's language names.

A later issue replaces this with go-enry (as BigCode used); the names already match it.
"""

from __future__ import annotations

from pathlib import PurePosixPath

BY_FILENAME = {
    "makefile": "Makefile",
    "cmakelists.txt": "CMake",
    "dockerfile": "Dockerfile",
}

BY_EXTENSION = {
    ".py": "Python",
    ".pyi": "Python",
    ".pyx": "Cython",
    ".pxd": "Cython",
    ".pxi": "Cython",
    ".c": "C",
    ".h": "C",
    ".cc": "C++",
    ".cpp": "C++",
    ".cxx": "C++",
    ".hpp": "C++",
    ".hh": "C++",
    ".cuh": "Cuda",
    ".cu": "Cuda",
    ".f": "Fortran",
    ".f77": "Fortran",
    ".f90": "Fortran Free Form",
    ".f95": "Fortran Free Form",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".ts": "TypeScript",
    ".java": "Java",
    ".go": "Go",
    ".rs": "Rust",
    ".sh": "Shell",
    ".bash": "Shell",
    ".html": "HTML",
    ".htm": "HTML",
    ".css": "CSS",
    ".json": "JSON",
    ".yaml": "YAML",
    ".yml": "YAML",
    ".toml": "TOML",
    ".xml": "XML",
    ".md": "Markdown",
    ".rst": "reStructuredText",
    ".txt": "Text",
    ".ini": "INI",
    ".cfg": "INI",
    ".jinja": "Jinja",
    ".j2": "Jinja",
    ".sql": "SQL",
    ".tex": "TeX",
    ".g4": "ANTLR",
}


def detect_language(path: str) -> str | None:
    """The language of `path` from its file name, or None when unknown."""
    name = PurePosixPath(path).name.lower()
    if name in BY_FILENAME:
        return BY_FILENAME[name]
    return BY_EXTENSION.get(PurePosixPath(name).suffix)
