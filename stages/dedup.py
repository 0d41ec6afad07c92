"""DVC stage `dedup` (see dvc.yaml); the logic lives in starbuild.dedup."""

from starbuild.core.stage import stage_app
from starbuild.dedup.stage import run_dedup

if __name__ == "__main__":
    stage_app("dedup", run_dedup)
