"""DVC stage `eval` (see dvc.yaml); the logic lives in starbuild.eval."""

from starbuild.eval.stage import run_eval
from starbuild.stage import stage_app

if __name__ == "__main__":
    stage_app("eval", run_eval)
