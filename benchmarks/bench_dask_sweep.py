"""Wall time of a synthesis sweep on Dask, and the time Dask adds per task by its own clocks.

Runs ``hdl.synth.run_synth`` on a fresh cache (nothing cached) either on the default
local in-process cluster (``--jobs N``) or through a running scheduler
(``--scheduler ADDRESS``), and prints JSON: the sweep's wall time, the number of
tool tasks, the sum of their compute time on the workers, and Dask's overhead per
task taken from the scheduler's transition log and the workers' task stream:

- ``dispatch_ms``: from the scheduler sending the task to a worker (``processing``)
  to the scheduler holding its result (``memory``), minus the worker's compute time
  of the task: scheduling, messages and (de)serialisation around one task;
- ``worker_other_ms``: the worker's own non-compute phases of the task (transfer,
  deserialise, per its ``startstops``).

Usage::

    python benchmarks/bench_dask_sweep.py --jobs 1
    python benchmarks/bench_dask_sweep.py --scheduler tcp://127.0.0.1:8786

Default sweep: designs uniform and post-split-grouped, b_w 3 and 4, b_a 4, 8 lanes
(4 configurations) on ice40-hx8k and ecp5-25k with 1 seed: 8 syntheses and 8
place-and-route runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hdl import jobs, synth  # noqa: E402


class TimedRunner(jobs.JobRunner):
    """A JobRunner that collects the scheduler's transition log and the task stream at close."""

    last: dict = {}

    def close(self):
        def transitions(dask_scheduler):
            return [(str(t[0]), t[2], t[-1]) for t in dask_scheduler.transition_log]

        log = self.client.run_on_scheduler(transitions)
        stream = self.client.get_task_stream(start=self._t0)
        TimedRunner.last = {"log": log, "stream": stream}
        super().close()

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._t0 = time.time()
        self.client.get_task_stream(start=self._t0)   # registers the scheduler's task stream


def overheads(log, stream) -> dict:
    sent, done = {}, {}
    for key, finish, stamp in log:
        if not key.startswith("asqhw-"):
            continue
        if finish == "processing":
            sent[key] = stamp                        # the last dispatch (a retry re-dispatches)
        elif finish == "memory":
            done[key] = stamp
    compute, other = {}, {}
    for t in stream:
        key = str(t["key"])
        for s in t["startstops"]:
            bucket = compute if s["action"] == "compute" else other
            bucket[key] = bucket.get(key, 0.0) + s["stop"] - s["start"]
    keys = [k for k in done if k in sent and k in compute]
    dispatch = [1e3 * (done[k] - sent[k] - compute[k]) for k in keys]
    worker_other = [1e3 * other.get(k, 0.0) for k in keys]
    return {"tasks": len(keys), "compute_s": round(sum(compute[k] for k in keys), 2),
            "dispatch_ms_median": round(statistics.median(dispatch), 2) if dispatch else None,
            "dispatch_ms_mean": round(statistics.mean(dispatch), 2) if dispatch else None,
            "dispatch_ms_max": round(max(dispatch), 2) if dispatch else None,
            "worker_other_ms_mean": round(statistics.mean(worker_other), 3) if worker_other else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--scheduler", default=None)
    ap.add_argument("--design", default="uniform,post-split-grouped")
    ap.add_argument("--w-bits", default="3,4")
    ap.add_argument("--lanes", default="8")
    ap.add_argument("--target", default="ice40-hx8k,ecp5-25k")
    ap.add_argument("--seeds", type=int, default=1)
    args = ap.parse_args(argv)
    configs = synth.expand_configs(args.design.split(","), synth.parse_int_list(args.w_bits, "w"),
                                   [4], synth.parse_int_list(args.lanes, "lanes"))
    synth.JobRunner = TimedRunner                  # run_synth's runner, with Dask's timings kept
    with tempfile.TemporaryDirectory(prefix="asqhw-bench-") as tmp:
        t0 = time.perf_counter()
        rows = synth.run_synth(configs, args.target.split(","), seeds=args.seeds, jobs=args.jobs,
                               outdir=Path(tmp) / "out", cache_dir=Path(tmp) / "cache",
                               progress=None, scheduler=args.scheduler)
        wall = time.perf_counter() - t0
    result = {"mode": f"scheduler {args.scheduler}" if args.scheduler else f"local --jobs {args.jobs}",
              "configs": len(configs), "rows": len(rows),
              "errors": sum(1 for r in rows if r["error"]), "wall_s": round(wall, 1),
              **overheads(TimedRunner.last["log"], TimedRunner.last["stream"]),
              "fmax": [r["fmax_mhz"] for r in rows]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
