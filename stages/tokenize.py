"""DVC stage `tokenize` (see dvc.yaml); the logic lives in starbuild.tokenizer."""

from starbuild.stage import stage_app
from starbuild.tokenizer.stage import run_tokenize

if __name__ == "__main__":
    stage_app("tokenize", run_tokenize)
