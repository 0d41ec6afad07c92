"""DVC stage `mixture` (see dvc.yaml); the logic lives in starbuild.mixture."""

from starbuild.core.stage import stage_app
from starbuild.mixture.stage import run_mixture

if __name__ == "__main__":
    stage_app("mixture", run_mixture)
