"""DVC stage `notebooks` (see dvc.yaml); the logic lives in starbuild.notebooks."""

from starbuild.core.stage import stage_app
from starbuild.notebooks.stage import run_notebooks

if __name__ == "__main__":
    stage_app("notebooks", run_notebooks)
