"""DVC stage `tokenizer` (see dvc.yaml); the logic lives in starbuild.tokenizer."""

from starbuild.core.stage import stage_app
from starbuild.tokenizer.stage import run_tokenizer

if __name__ == "__main__":
    stage_app("tokenizer", run_tokenizer)
