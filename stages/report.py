"""DVC stage `report` (see dvc.yaml); the logic lives in starbuild.report."""

from starbuild.core.stage import stage_app
from starbuild.report.stage import run_report

if __name__ == "__main__":
    stage_app("report", run_report)
