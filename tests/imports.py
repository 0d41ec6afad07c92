"""Which `src/starbuild` files a stage script imports, and the dvc.yaml code deps that follow from it.

A stage must list as deps exactly the code it runs, so that editing a file reruns exactly the stages
that import it. The import graph is read statically from the source (nothing is imported):

- `import a.b.c` runs `a/__init__.py`, `a/b/__init__.py` and `a/b/c.py`;
- `from a.b import c` runs the same files, `c` counting as a module when `a/b/c.py` (or `a/b/c/`) exists;
- relative imports are resolved against the importing module's package;
- imports inside functions count (they run when the stage runs); those under `if TYPE_CHECKING:` don't;
- `importlib.import_module("starbuild.x")` with a literal name counts as `import starbuild.x`;
- a plugin package (PLUGIN_PACKAGES) holds modules that Hydra picks by `_target_` at run time, so
  importing it, or anything inside it, counts as importing every module in it.

`python -m tests.imports` prints, for every stage in dvc.yaml, the deps block it should have.
"""

from __future__ import annotations

import ast
import shlex
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

PACKAGE = "starbuild"
# Packages whose modules are chosen at run time by a Hydra `_target_`, never imported by name.
PLUGIN_PACKAGES = ("starbuild.executors",)
# Deps under these folders are code: they must match the imports exactly. Anything else is data.
CODE_ROOTS = ("src/", "stages/")
REPO_ROOT = Path(__file__).resolve().parents[1]


def module_name(file: Path, src: Path) -> str:
    """`src/a/b/c.py` -> `a.b.c`; `src/a/b/__init__.py` -> `a.b`."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_file(name: str, src: Path) -> Path | None:
    """The file that `import name` runs last (the module, or the package's `__init__.py`), if it is ours."""
    base = src.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of the tree except the bodies of `if TYPE_CHECKING:` blocks."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def _package_of(file: Path, src: Path) -> list[str]:
    """The package a module's relative imports are resolved against (empty outside `src`)."""
    if not file.is_relative_to(src):
        return []
    name = module_name(file, src).split(".")
    return name if file.name == "__init__.py" else name[:-1]


def imported_names(file: Path, src: Path) -> set[str]:
    """Dotted names of every module `file` may import at run time (our own and third-party alike).

    For `from x import y`, both `x` and `x.y` are listed: `x.y` only counts if it is a module.
    """
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    names: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(file, src)
                if node.level - 1 >= len(package):
                    continue  # beyond the top-level package: Python would refuse it too
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
            )
        ):
            names.add(node.args[0].value)
    return {name for name in names if name}


def _with_parents(name: str) -> Iterator[str]:
    """`a.b.c` -> `a`, `a.b`, `a.b.c`: importing a module runs every package on the way."""
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        yield ".".join(parts[:depth])


def _plugin_modules(package: str, src: Path) -> Iterator[str]:
    folder = src.joinpath(*package.split("."))
    for file in sorted(folder.rglob("*.py")):
        yield module_name(file, src)


def imported_files(script: Path, src: Path) -> set[Path]:
    """Every file under `src/starbuild` that running `script` imports, directly or transitively."""
    src = src.resolve()
    seen: set[Path] = set()
    done: set[str] = set()
    pending_files = [script.resolve()]
    while pending_files:
        file = pending_files.pop()
        pending_names = [n for n in imported_names(file, src) if n == PACKAGE or n.startswith(PACKAGE + ".")]
        while pending_names:
            name = pending_names.pop()
            for module in _with_parents(name):
                if module in done:
                    continue
                done.add(module)
                for plugin in PLUGIN_PACKAGES:
                    if module == plugin:
                        pending_names.extend(_plugin_modules(plugin, src))
                target = module_file(module, src)
                if target is not None and target not in seen:
                    seen.add(target)
                    pending_files.append(target)
    return seen


def _py_files(folder: Path) -> set[Path]:
    return {f for f in folder.rglob("*.py") if "__pycache__" not in f.parts}


def expected_deps(script: Path, src: Path, root: Path | None = None) -> list[str]:
    """The minimal code deps of the stage run by `script`, as dvc.yaml lines relative to `root`.

    The stage script first; then, sorted, each imported file, except that a folder whose `.py` files
    (recursively) are all imported is one line (the highest such folder below `src`).
    """
    src = src.resolve()
    root = (root or src.parent).resolve()
    imported = imported_files(script, src)
    lines: set[str] = set()
    for file in imported:
        covering = file
        for folder in file.parents:
            if folder == src or not folder.is_relative_to(src):
                break
            if _py_files(folder) <= imported:
                covering = folder
        lines.add(covering.relative_to(root).as_posix())
    return [script.resolve().relative_to(root).as_posix(), *sorted(lines)]


def is_code_dep(dep: str) -> bool:
    return dep.startswith(CODE_ROOTS)


def stage_script(cmd: str | list[str], root: Path) -> Path:
    """The `stages/*.py` script a stage's `cmd` runs."""
    commands = [cmd] if isinstance(cmd, str) else cmd
    for command in commands:
        for token in shlex.split(command):
            if token.endswith(".py"):
                return root / token
    raise ValueError(f"no Python script in cmd {cmd!r}")


def dvc_stages(root: Path) -> dict[str, dict]:
    return yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def dep_path(dep: str | dict) -> str:
    return dep if isinstance(dep, str) else next(iter(dep))


def covers(dep: str, file: str) -> bool:
    """Whether the dep line `dep` (a file or a folder) covers the repo-relative `file`."""
    dep = dep.rstrip("/")
    return file == dep or file.startswith(dep + "/")


def dep_problems(name: str, stage: dict, root: Path) -> tuple[list[str], list[str]] | None:
    """For a stage whose code deps are wrong, the (add, remove) lines that make them right; else None.

    Wrong means: a file the stage imports is covered by no dep, or a code dep (under src/ or stages/)
    covers a `.py` file the stage never imports (a folder dep must be imported in full).
    """
    script = stage_script(stage["cmd"], root)
    src = root / "src"
    declared = [dep_path(d) for d in stage.get("deps", [])]
    code = [d for d in declared if is_code_dep(d)]
    needed = {script.resolve().relative_to(root.resolve()).as_posix()} | {
        f.relative_to(src.resolve().parent).as_posix() for f in imported_files(script, src)
    }
    missing = {f for f in needed if not any(covers(d, f) for d in code)}
    unused = []
    for dep in code:
        path = root / dep
        files = _py_files(path) if path.is_dir() else {path}
        rel = {f.relative_to(root).as_posix() for f in files}
        if not path.exists() or not rel <= needed:
            unused.append(dep)
    if not missing and not unused:
        return None
    expected = expected_deps(script, src, root)
    return [d for d in expected if d not in code], [d for d in code if d not in expected]


def deps_block(name: str, stage: dict, root: Path) -> str:
    """The `deps:` block of a stage as it should read in dvc.yaml (data deps kept in their order)."""
    code = expected_deps(stage_script(stage["cmd"], root), root / "src", root)
    data = [dep_path(d) for d in stage.get("deps", []) if not is_code_dep(dep_path(d))]
    lines = [f"  {name}:", "    deps:", *(f"      - {d}" for d in [*code, *data])]
    return "\n".join(lines)


def main(argv: Iterable[str] = ()) -> int:
    root = REPO_ROOT
    for name, stage in dvc_stages(root).items():
        print(deps_block(name, stage, root))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
