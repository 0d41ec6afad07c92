"""Where every stage reads and writes, relative to the repository root (dvc.yaml mirrors this)."""

from pathlib import Path

RAW = Path("data/raw")
FILTERED = Path("data/filtered")
DEDUP = Path("data/dedup")
DEDUP_CLUSTERS = Path("data/dedup_clusters")
CLEAN = Path("data/clean")
DOCS = Path("data/docs")
TOKENS = Path("data/tokens")
TOKENIZER = Path("models/tokenizer")
# The HF `tokenizers` file, in models/tokenizer/ and in the exported models/hf/.
TOKENIZER_FILE = "tokenizer.json"
CHECKPOINTS = Path("models/checkpoints")
HF_MODEL = Path("models/hf")
METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")

# Which stage produces each path, so a missing input can name the command that makes it.
PRODUCER = {
    RAW: "pull",
    FILTERED: "filter",
    DEDUP: "dedup",
    CLEAN: "clean",
    DOCS: "format",
    TOKENIZER: "tokenizer",
    TOKENS: "tokenize",
    CHECKPOINTS: "train",
    HF_MODEL: "export",
}


def producer_of(path: Path) -> str | None:
    """The stage that writes `path` or the table directory it lies in, if any."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate in PRODUCER:
            return PRODUCER[candidate]
    return None


def metrics_file(stage: str) -> Path:
    """The metrics JSON a stage writes (declared `cache: false` in dvc.yaml)."""
    return METRICS / f"{stage}.json"
