"""DVC stage `pull` (see dvc.yaml); the logic lives in starbuild.swh."""

from starbuild.core.stage import stage_app
from starbuild.swh.stage import run_pull

if __name__ == "__main__":
    stage_app("pull", run_pull)
