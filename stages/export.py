"""DVC stage `export` (see dvc.yaml); the logic lives in starbuild.model."""

from starbuild.core.stage import stage_app
from starbuild.model.stage import run_export

if __name__ == "__main__":
    stage_app("export", run_export)
