"""DVC stage `train` (see dvc.yaml); the logic lives in starbuild.train."""

from starbuild.train.stage import run_train
from starbuild.stage import stage_app

if __name__ == "__main__":
    stage_app("train", run_train)
