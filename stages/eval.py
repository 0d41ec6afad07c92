"""DVC stage `eval` (see dvc.yaml); the logic lives in starbuild.eval."""

from starbuild.core.stage import stage_app
from starbuild.eval.stage import run_eval

if __name__ == "__main__":
    stage_app("eval", run_eval)
