"""DVC stage `issues` (see dvc.yaml); the logic lives in starbuild.issues."""

from starbuild.core.stage import stage_app
from starbuild.issues.stage import run_issues

if __name__ == "__main__":
    stage_app("issues", run_issues)
