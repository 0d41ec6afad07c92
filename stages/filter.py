"""DVC stage `filter` (see dvc.yaml); the logic lives in starbuild.filters."""

from starbuild.filters.stage import run_filter
from starbuild.stage import stage_app

if __name__ == "__main__":
    stage_app("filter", run_filter)
