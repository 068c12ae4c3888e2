"""Wall time of a synthesis sweep on Dask, and the time Dask adds per task by its own clocks.

Runs ``hdl.synth.run_synth`` on a fresh cache (nothing cached) either on the default
local in-process cluster (``--jobs N``) or through a running scheduler
(``--scheduler ADDRESS``), and prints JSON: the sweep's wall time, the number of
tool tasks, the sum of their compute time on the workers, and, from Dask's own
clocks (the workers' task stream, the scheduler's transition log):

- ``return_ms``: from a worker finishing a task's compute to the scheduler holding
  its result (median and maximum over the tasks);
- ``worker_other_ms``: the worker's non-compute phases of a task (transfer,
  deserialise), mean.

``--noop N`` instead sends N empty tasks one after another through the same runner and
reports the round trip the client sees (submit to result) and the workers' compute
time of them: the time Dask adds to every task.

Usage::

    python benchmarks/bench_dask_sweep.py --jobs 1
    python benchmarks/bench_dask_sweep.py --scheduler tcp://127.0.0.1:8786
    python benchmarks/bench_dask_sweep.py --noop 200 [--jobs 2 | --scheduler ADDRESS]

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

from asqhw.hdl import jobs, synth  # noqa: E402


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


def _compute(stream) -> tuple[dict, dict, dict]:
    start, stop, other = {}, {}, {}
    for t in stream:
        key = str(t["key"])
        for s in t["startstops"]:
            if s["action"] == "compute":
                start[key], stop[key] = s["start"], s["stop"]
            else:
                other[key] = other.get(key, 0.0) + s["stop"] - s["start"]
    return start, stop, other


def overheads(log, stream) -> dict:
    done = {key: stamp for key, finish, stamp in log if key.startswith("asqhw-") and finish == "memory"}
    start, stop, other = _compute(stream)
    keys = [k for k in done if k in stop]
    back = [1e3 * (done[k] - stop[k]) for k in keys]
    return {"tasks": len(keys), "compute_s": round(sum(stop[k] - start[k] for k in keys), 2),
            "return_ms_median": round(statistics.median(back), 2) if back else None,
            "return_ms_max": round(max(back), 2) if back else None,
            "worker_other_ms_mean": round(statistics.mean([1e3 * other.get(k, 0.0) for k in keys]), 3)
            if keys else None}


def _noop():
    return None


def noop_round_trips(n: int, jobs_: int, scheduler) -> dict:
    trips = []
    with TimedRunner(jobs_, scheduler) as runner:
        for _ in range(n):
            t0 = time.perf_counter()
            runner.submit(_noop, tag=None, name="noop")
            (outcome,) = list(runner.results())
            trips.append(1e3 * (time.perf_counter() - t0))
    start, stop, _ = _compute(TimedRunner.last["stream"])
    compute = [1e3 * (stop[k] - start[k]) for k in stop if "noop" in k]
    return {"mode": f"scheduler {scheduler}" if scheduler else f"local --jobs {jobs_}",
            "noop_tasks": n, "round_trip_ms_median": round(statistics.median(trips), 2),
            "round_trip_ms_p90": round(sorted(trips)[int(0.9 * n)], 2),
            "compute_ms_median": round(statistics.median(compute), 3) if compute else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--scheduler", default=None)
    ap.add_argument("--design", default="uniform,post-split-grouped")
    ap.add_argument("--w-bits", default="3,4")
    ap.add_argument("--lanes", default="8")
    ap.add_argument("--target", default="ice40-hx8k,ecp5-25k")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--noop", type=int, default=0, metavar="N", help="N empty tasks instead")
    args = ap.parse_args(argv)
    if args.noop:
        print(json.dumps(noop_round_trips(args.noop, args.jobs, args.scheduler)))
        return 0
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
