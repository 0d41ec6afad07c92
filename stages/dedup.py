"""DVC stage `dedup` (see dvc.yaml); the logic lives in starbuild.dedup."""

from starbuild.dedup.stage import run_dedup
from starbuild.stage import stage_app

if __name__ == "__main__":
    stage_app("dedup", run_dedup)
