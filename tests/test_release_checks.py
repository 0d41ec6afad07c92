"""make release's checks that need no build: the version's form and the artifact tags it creates."""

from __future__ import annotations

import subprocess

import pytest

from starbuild.release import ReleaseError, artifact_names, release_tags
from tests.conftest import REPO_ROOT


def test_tags_name_every_artifact_of_dvc_yaml() -> None:
    names = artifact_names(REPO_ROOT)
    assert {"tokenizer", "dedup-dataset", "model", "eval-metrics"} <= set(names)
    assert release_tags(REPO_ROOT, "v1.2.3") == [f"{name}@v1.2.3" for name in names]


@pytest.mark.parametrize("version", ["1.2.3", "v1.2", "v1.2.3-rc1", "latest", ""])
def test_a_malformed_version_is_refused(version: str) -> None:
    with pytest.raises(ReleaseError, match=r"VERSION must look like v1\.2\.3"):
        release_tags(REPO_ROOT, version)


def test_make_release_without_a_version_says_how() -> None:
    result = subprocess.run(["make", "-s", "release"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "error: release: give a version, e.g. make release VERSION=v0.1.0" in result.stderr
