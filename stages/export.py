"""DVC stage `export` (see dvc.yaml); the logic lives in starbuild.model."""

from starbuild.model.stage import run_export
from starbuild.stage import stage_app

if __name__ == "__main__":
    stage_app("export", run_export)
