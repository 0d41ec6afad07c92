"""How the data stages grow with the corpus: time and peak memory at about 1x, 2x and 4x the embedded one.

1x is the embedded default corpus (conf/source/embedded.yaml); 2x adds numba's source tree and 4x
numba's and sympy's (installed by `make setup`, so the same bytes on every machine with the lock).
Each scale runs pull, filter, dedup, clean and format in a fresh project directory, each stage in its
own process with the default local executor (2 workers); wall time and the peak RSS of the largest
process (the stage or one of its workers) are recorded per stage. Each is fitted as a fixed cost plus
a cost per input byte (least squares), and the log-log slope of time is printed too (1 = linear);
peak RSS is printed per scale (it should stay flat: memory is bounded by the shard, not the corpus).
The per-byte cost projects what a Stack v2-sized input would take (67.5 TB pulled, then each stage's
input shrinking as it did here at 4x), as core-hours and as 64-core nodes for a 24-hour run,
assuming shard work scales out linearly (executor=ray).
Run: `.venv/bin/python bench/bench_scaling.py` (a few minutes).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("pull", "filter", "dedup", "clean", "format")
# Extra origins per scale (distribution, subdir), on top of the embedded ones.
EXTRA = {1: [], 2: [("numba", "numba")], 4: [("numba", "numba"), ("sympy", "sympy")]}
STACK_V2_BYTES = 67.5e12
CORES, NODE_CORES, HOURS = 2, 64, 24
RUN = """
import json, resource, sys, time
from omegaconf import OmegaConf
from tests.factories import stage_context
import starbuild.{module} as stage_module
cfg = OmegaConf.load(sys.argv[1])
start = time.perf_counter()
stage_module.{function}(stage_context("{stage}", cfg, __import__("pathlib").Path(sys.argv[2])))
seconds = time.perf_counter() - start
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print("RESULT " + json.dumps({{"seconds": seconds, "peak_bytes": peak * 1024}}))
"""
ENTRY = {"pull": ("swh.stage", "run_pull"), "filter": ("filters.stage", "run_filter"),
         "dedup": ("dedup.stage", "run_dedup"), "clean": ("clean.stage", "run_clean"),
         "format": ("format.stage", "run_format")}
INPUT = {"pull": None, "filter": "data/raw", "dedup": "data/filtered", "clean": "data/dedup", "format": "data/clean"}


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.parquet"))


def content_bytes(path: Path) -> int:
    import pyarrow.parquet as pq

    column = "content" if "docs" not in str(path) else "text"
    return sum(sum(len(t.encode()) for t in pq.read_table(f, columns=[column]).column(0).to_pylist() if t)
               for f in sorted(path.rglob("*.parquet")))


def run_scale(scale: int, work: Path) -> dict[str, dict]:
    from omegaconf import OmegaConf

    from starbuild.core.config import compose

    cfg = compose([], conf_dir=ROOT / "conf")
    origins = OmegaConf.to_container(cfg.source.origins) + [
        {"name": f"pypi/{dist}-{sub.replace('/', '-')}", "distribution": dist, "subdir": sub}
        for dist, sub in EXTRA[scale]]
    cfg.source.origins = origins
    config = work / "cfg.yaml"
    OmegaConf.save(cfg, config)
    results = {}
    for stage in STAGES:
        module, function = ENTRY[stage]
        code = RUN.format(module=module, function=function, stage=stage)
        done = subprocess.run([sys.executable, "-c", code, str(config), str(work)], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"})
        if done.returncode != 0:
            sys.exit(f"{stage} at {scale}x failed:\n{done.stderr[-3000:]}")
        result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
        source = INPUT[stage]
        result["input_bytes"] = content_bytes(work / "data/raw") if source is None else content_bytes(work / source)
        results[stage] = result
        print(f"  {scale}x {stage:7s} {result['input_bytes'] / 1e6:7.1f} MB in  {result['seconds']:6.1f} s  "
              f"peak {result['peak_bytes'] / 2**20:6.0f} MiB", flush=True)
    return results


def affine(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(fixed, per_unit) of y = fixed + per_unit * x, least squares."""
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - slope * mx, slope


def loglog_slope(points: list[tuple[float, float]]) -> float:
    """The slope of log y against log x (1: linear growth)."""
    return affine([(math.log(x), math.log(y)) for x, y in points])[1]


def main() -> None:
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in EXTRA:
            work = Path(tmp) / f"x{scale}"
            work.mkdir()
            runs[scale] = run_scale(scale, work)
    print(f"\nfit: time = fixed + input / throughput over {len(runs)} scales (peak RSS at each scale); "
          f"projection for {STACK_V2_BYTES / 1e12:.1f} TB pulled (each stage's input shrinking as at 4x):")
    largest = runs[max(runs)]
    share = {stage: largest[stage]["input_bytes"] / largest["pull"]["input_bytes"] for stage in STAGES}
    for stage in STAGES:
        points = [(runs[s][stage]["input_bytes"], runs[s][stage]["seconds"]) for s in runs]
        peaks = "/".join(f"{runs[s][stage]['peak_bytes'] / 2**20:.0f}" for s in runs)
        fixed, per_byte = affine(points)
        size = STACK_V2_BYTES * share[stage]
        core_hours = max(per_byte, 0.0) * size * CORES / 3600
        nodes = max(1, math.ceil(core_hours / (NODE_CORES * HOURS)))
        print(f"  {stage:7s} fixed {fixed:5.2f} s, {1e-6 / per_byte:6.1f} MB/s on {CORES} cores (log-log slope "
              f"{loglog_slope(points):4.2f}); peak RSS {peaks} MiB; "
              f"{size / 1e12:5.1f} TB -> {core_hours:9,.0f} core-hours = {nodes:4,} nodes x {NODE_CORES} cores "
              f"x {HOURS} h")
    print(f"(this machine: {CORES} cores; a stage holds one shard at a time per worker, so its peak RSS follows the "
          f"shard size, not the corpus)")


if __name__ == "__main__":
    main()
