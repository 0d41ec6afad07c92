"""DVC stage `train` (see dvc.yaml); the logic lives in starbuild.train."""

from starbuild.core.stage import stage_app
from starbuild.train.stage import run_train

if __name__ == "__main__":
    stage_app("train", run_train)
