"""Exact rebuilds: every stage lists as deps exactly the code it imports, and DVC acts on it.

Two checks. Statically, each stage's code deps in dvc.yaml (under src/ or stages/) cover every file
its script imports and nothing else (tests/imports.py reads the imports). Dynamically, in a copy of
the project, appending a line to a source file makes `dvc status` report a changed dep for exactly the
stages that import that file, against the committed dvc.lock.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO_ROOT
from tests.factories import copy_sources
from tests.imports import (
    covers,
    dep_problems,
    dvc_stages,
    expected_deps,
    imported_files,
    is_code_dep,
    stage_script,
)

if TYPE_CHECKING:
    from dvc.repo import Repo

# Built by a run of the DAG: never copied into the project copy (dvc.lock is kept: it is the subject).
OUTPUTS = ("data/", "models/", "metrics/", "plots/", "reports/", "outputs/", "multirun/")
GIT_ENV = {"GIT_AUTHOR_NAME": "starbuild-test", "GIT_AUTHOR_EMAIL": "test@example.org",
           "GIT_COMMITTER_NAME": "starbuild-test", "GIT_COMMITTER_EMAIL": "test@example.org"}
STALE_LOCK = "dvc.lock is out of date with the code; run `make repro`"
# DVC 3.67 warns from inside its own graph code on every status/repro.
pytestmark = pytest.mark.filterwarnings("ignore:_NoneStep.value:DeprecationWarning")


# --- static: dvc.yaml deps against the imports ------------------------------------------------------


@pytest.mark.parametrize("name", list(dvc_stages(REPO_ROOT)))
def test_stage_deps_are_exactly_the_code_it_imports(name: str) -> None:
    problems = dep_problems(name, dvc_stages(REPO_ROOT)[name], REPO_ROOT)
    if problems is None:
        return
    add, remove = problems
    script = dvc_stages(REPO_ROOT)[name]["cmd"]
    lines = [f"stage {name}: its code deps in dvc.yaml do not match what `{script}` imports; in its deps:"]
    lines += [f"  add:    - {d}" for d in add] + [f"  remove: - {d}" for d in remove]
    lines.append("(`python -m tests.imports` prints every stage's deps block)")
    pytest.fail("\n".join(lines), pytrace=False)


PLUGIN_TREE = {
    "stages/s.py": "from starbuild.core import stage\nimport starbuild.runner\n",
    "src/starbuild/__init__.py": "",
    "src/starbuild/core/__init__.py": "",
    "src/starbuild/core/stage.py": "from .. import util\nfrom ..util import helper\n",
    "src/starbuild/util.py": "def helper(): ...\n",
    "src/starbuild/runner.py": (
        "import importlib\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from starbuild import typed_only\nelse:\n    import json\n"
        "def run():\n    from starbuild import executors\n    importlib.import_module('starbuild.dyn')\n"
    ),
    "src/starbuild/typed_only.py": "",
    "src/starbuild/dyn.py": "",
    "src/starbuild/unused.py": "",
    "src/starbuild/executors/__init__.py": "",
    "src/starbuild/executors/local.py": "from starbuild import helpers\n",
    "src/starbuild/executors/remote/__init__.py": "",
    "src/starbuild/executors/remote/ray.py": "",
    "src/starbuild/helpers.py": "",
}


def test_imports_follow_packages_relative_and_lazy_imports_and_plugins(tmp_path: Path) -> None:
    for rel, text in PLUGIN_TREE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = {f.relative_to(tmp_path).as_posix() for f in imported_files(tmp_path / "stages/s.py", tmp_path / "src")}
    assert found == set(PLUGIN_TREE) - {"stages/s.py", "src/starbuild/typed_only.py", "src/starbuild/unused.py"}
    assert expected_deps(tmp_path / "stages/s.py", tmp_path / "src", tmp_path) == [
        "stages/s.py", "src/starbuild/__init__.py", "src/starbuild/core", "src/starbuild/dyn.py",
        "src/starbuild/executors", "src/starbuild/helpers.py", "src/starbuild/runner.py", "src/starbuild/util.py"]


# --- dynamic: dvc status after editing each file ----------------------------------------------------


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, env={**os.environ, **GIT_ENV}, check=True, capture_output=True)


def copy_project(dest: Path, root: Path = REPO_ROOT) -> Path:
    """The project's sources (git-tracked or not ignored), dvc.yaml, dvc.lock and .dvc/ in a new git repo."""
    copy_sources(dest, OUTPUTS, root)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "project copy")
    return dest


def changed_deps(status: dict) -> dict[str, dict[str, str]]:
    """`Repo.status()` (stage -> [{"changed deps": {path: change}}, {"changed outs": …}, "changed command"…])
    reduced to stage -> {dep path: change}."""
    changed: dict[str, dict[str, str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, dict) and "changed deps" in entry:
                changed.setdefault(stage, {}).update(entry["changed deps"])
    return changed


def code_changes(status: dict) -> dict[str, dict[str, str]]:
    return {stage: code for stage, deps in changed_deps(status).items()
            if (code := {path: change for path, change in deps.items() if is_code_dep(path)})}


def stage_imports(project: Path) -> dict[str, set[str]]:
    """Stage name -> every repo-relative code file it runs: its script and the src files it imports."""
    src = project / "src"
    result = {}
    for name, stage in dvc_stages(project).items():
        script = stage_script(stage["cmd"], project)
        files = {f.relative_to(src.resolve().parent).as_posix() for f in imported_files(script, src)}
        result[name] = files | {script.relative_to(project).as_posix()}
    return result


def edited_files(project: Path) -> list[str]:
    files = sorted((project / "src").rglob("*.py")) + sorted((project / "stages").glob("*.py"))
    return [f.relative_to(project).as_posix() for f in files if "__pycache__" not in f.parts]


def stages_marked(status: dict, rel: str) -> set[str]:
    """The stages that report a modified dep covering `rel` (a data dep may show deleted: never looked at)."""
    return {stage for stage, deps in changed_deps(status).items()
            if any(covers(path, rel) and change == "modified" for path, change in deps.items())}


def parse_each_yaml_text_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memoise DVC's YAML parser by text: each `status` re-parses dvc.yaml, dvc.lock and params.yaml (once per
    stage) in pure-Python ruamel, ~1 s of the ~1.2 s a call takes. The edits touch only .py files, so those
    texts never change; DVC gets a fresh copy of the same parse and does everything else as it would."""
    import dvc.utils.serialize as serialize
    import dvc.utils.serialize._yaml as serialize_yaml
    import dvc.utils.strictyaml as strictyaml

    parse = functools.lru_cache(maxsize=None)(serialize_yaml.parse_yaml)

    def parse_yaml(text: str, path: str, typ: str = "safe") -> object:
        return copy.deepcopy(parse(text, path, typ))

    for module in (serialize, serialize_yaml, strictyaml):
        monkeypatch.setattr(module, "parse_yaml", parse_yaml)


@contextlib.contextmanager
def dvc_repo(project: Path) -> Iterator[Repo]:
    """DVC's Repo for `project`, opened from inside it: the API resolves default targets against the cwd."""
    from dvc.repo import Repo

    with contextlib.chdir(project), Repo(str(project)) as repo:
        yield repo


def edit_mismatches(project: Path, files: list[str]) -> Iterator[str]:
    """For each file, append a comment, ask `dvc status`, compare with the stages that import it, restore."""
    imports = stage_imports(project)
    with dvc_repo(project) as repo:
        for rel in files:
            path = project / rel
            original = path.read_bytes()
            try:
                path.write_bytes(original + b"\n# edited by tests/test_deps.py\n")
                marked = stages_marked(repo.status(), rel)
            finally:
                path.write_bytes(original)
            importers = {stage for stage, used in imports.items() if rel in used}
            if missing := sorted(importers - marked):
                yield f"editing {rel} leaves {', '.join(missing)} up to date, though it imports the file"
            if extra := sorted(marked - importers):
                yield f"editing {rel} reruns {', '.join(extra)}, which never imports the file"


def test_editing_a_file_reruns_exactly_the_stages_that_import_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = copy_project(tmp_path / "project")
    parse_each_yaml_text_once(monkeypatch)
    # The committed dvc.lock must describe the committed code (`make repro` keeps it so); a stale one is a
    # failure here, not a reason to skip the check.
    assert (project / "dvc.lock").is_file(), f"{STALE_LOCK} (there is no dvc.lock)"
    with dvc_repo(project) as repo:
        stale = code_changes(repo.status())
    if stale:
        changes = [f"{stage}: {path} {change}" for stage, deps in sorted(stale.items())
                   for path, change in sorted(deps.items())]
        more = f", and {len(changes) - 6} more" if len(changes) > 6 else ""
        pytest.fail(f"{STALE_LOCK} (before any edit, {', '.join(changes[:6])}{more})")
    start = time.monotonic()
    files = edited_files(project)
    problems = list(edit_mismatches(project, files))
    seconds = time.monotonic() - start
    assert not problems, "\n".join(problems)
    print(f"dvc status after editing each of {len(files)} files: {seconds:.1f} s")


# --- the dynamic check on a tiny project, so that it cannot pass vacuously ------------------------


TINY_SOURCES = {
    "src/starbuild/__init__.py": '"""Tiny."""\n',
    "src/starbuild/core/__init__.py": "",
    "src/starbuild/core/base.py": "VALUE = 1\n",
    "src/starbuild/alpha.py": "from starbuild.core.base import VALUE\n",
    "src/starbuild/beta.py": "from . import alpha\nfrom .core import base\n",
    "stages/one.py": "from starbuild.alpha import VALUE\n",
    "stages/two.py": "import starbuild.beta\n",
}


def tiny_project(root: Path, deps: dict[str, list[str]]) -> Path:
    """A git + DVC project with two `echo` stages whose dvc.lock records the given deps."""
    from dvc.repo import Repo

    for rel, text in TINY_SOURCES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q")
    with contextlib.chdir(root):
        Repo.init(str(root)).close()
    (root / ".dvc" / "config").write_text("[core]\n    analytics = false\n")
    write_dvc_yaml(root, deps)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "tiny")
    with dvc_repo(root) as repo:
        repo.reproduce()
    return root


def write_dvc_yaml(root: Path, deps: dict[str, list[str]]) -> None:
    lines = ["stages:"]
    for name, stage_deps in deps.items():
        lines += [f"  {name}:", f"    cmd: echo stages/{name}.py", "    deps:", *(f"      - {d}" for d in stage_deps)]
    (root / "dvc.yaml").write_text("\n".join(lines) + "\n")


TINY_RIGHT = {
    "one": ["stages/one.py", "src/starbuild/__init__.py", "src/starbuild/alpha.py", "src/starbuild/core"],
    "two": ["stages/two.py", "src/starbuild"],
}


def test_tiny_project_with_exact_deps_passes(tmp_path: Path) -> None:
    project = tiny_project(tmp_path, TINY_RIGHT)
    assert all(dep_problems(name, stage, project) is None for name, stage in dvc_stages(project).items())
    assert list(edit_mismatches(project, edited_files(project))) == []


def test_tiny_project_missing_and_extra_deps_are_caught(tmp_path: Path) -> None:
    # `one` forgets the core it imports through alpha, and lists beta.py, which it never imports.
    wrong = {"one": ["stages/one.py", "src/starbuild/__init__.py", "src/starbuild/alpha.py",
                     "src/starbuild/beta.py"],
             "two": ["stages/two.py", "src/starbuild"]}
    project = tiny_project(tmp_path, wrong)
    stages = dvc_stages(project)
    assert dep_problems("one", stages["one"], project) == (["src/starbuild/core"], ["src/starbuild/beta.py"])
    assert dep_problems("two", stages["two"], project) is None
    assert list(edit_mismatches(project, edited_files(project))) == [
        "editing src/starbuild/beta.py reruns one, which never imports the file",
        "editing src/starbuild/core/__init__.py leaves one up to date, though it imports the file",
        "editing src/starbuild/core/base.py leaves one up to date, though it imports the file",
    ]


def test_a_stale_lock_is_seen_before_any_edit(tmp_path: Path) -> None:
    project = tiny_project(tmp_path, TINY_RIGHT)
    (project / "src/starbuild/core/base.py").write_text("VALUE = 2\n")
    with dvc_repo(project) as repo:
        assert code_changes(repo.status()) == {"one": {"src/starbuild/core": "modified"},
                                               "two": {"src/starbuild": "modified"}}
