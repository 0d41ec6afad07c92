"""DVC stage `clean_sources` (see dvc.yaml); the logic lives in starbuild.clean_sources."""

from starbuild.clean_sources.stage import run_clean_sources
from starbuild.core.stage import stage_app

if __name__ == "__main__":
    stage_app("clean_sources", run_clean_sources)
