"""DVC stage `report` (see dvc.yaml); the logic lives in starbuild.report."""

from starbuild.report.stage import run_report
from starbuild.stage import stage_app

if __name__ == "__main__":
    stage_app("report", run_report)
