"""DVC stage `tokenize` (see dvc.yaml); named tokenize_docs.py so it cannot shadow the stdlib `tokenize`."""

from starbuild.core.stage import stage_app
from starbuild.tokenizer.tokenize_stage import run_tokenize

if __name__ == "__main__":
    stage_app("tokenize", run_tokenize)
