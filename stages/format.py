"""DVC stage `format` (see dvc.yaml); the logic lives in starbuild.format."""

from starbuild.core.stage import stage_app
from starbuild.format.stage import run_format

if __name__ == "__main__":
    stage_app("format", run_format)
