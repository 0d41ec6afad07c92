"""DVC stage `filter` (see dvc.yaml); the logic lives in starbuild.filters."""

from starbuild.core.stage import stage_app
from starbuild.filters.stage import run_filter

if __name__ == "__main__":
    stage_app("filter", run_filter)
