"""DVC stage `format` (see dvc.yaml); the logic lives in starbuild.format."""

from starbuild.format.stage import run_format
from starbuild.stage import stage_app

if __name__ == "__main__":
    stage_app("format", run_format)
