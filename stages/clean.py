"""DVC stage `clean` (see dvc.yaml); the logic lives in starbuild.clean."""

from starbuild.clean.stage import run_clean
from starbuild.core.stage import stage_app

if __name__ == "__main__":
    stage_app("clean", run_clean)
