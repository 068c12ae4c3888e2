"""Sweeps on Dask (hdl.jobs): a real local cluster on the loopback address.

The module starts a Dask scheduler and two worker processes (one thread each) on
127.0.0.1 with ports the system picks, and stops them at the end; nothing listens on
or connects to any other address. Tool runs are real (yosys, nextpnr), on the smallest
units; the RTL runs use Amaranth's simulator (a Verilator build takes a minute here).
The test that kills a worker runs last.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from distributed import get_task_stream
from distributed.diagnostics.plugin import WorkerPlugin

from asqhw.core.errors import UserError
from asqhw.core.params import Datapath
from asqhw.core.vectors import load_cases
from asqhw.core.conform import compare
from asqhw.hdl.cosim import run_cases_rtl
from asqhw.hdl.jobs import ENV, JobRunner
from asqhw.hdl.synth import make_config, run_synth, to_verilog

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


class Mac(wiring.Component):
    """A 1-lane multiply-accumulate with the DotUnit's ports: a unit yosys and nextpnr finish fast."""

    def __init__(self, config):
        super().__init__({"valid": In(1), "first": In(1), "last": In(1),
                          "a": In(config.dp.a_bits), "w": In(config.dp.w_bits),
                          "acc": Out(config.acc_bits), "out_valid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        product = self.a * self.w.as_signed()
        with m.If(self.valid):
            m.d.sync += self.acc.eq(Mux(self.first, product, self.acc + product))
        m.d.sync += self.out_valid.eq(self.valid & self.last)
        return m


def configs():
    return [make_config("uniform", w_bits=b, a_bits=4, lanes=1, build=Mac) for b in (4, 3)]


# ---- the cluster --------------------------------------------------------------------------

class Cluster:
    def __init__(self, address, scheduler, workers):
        self.address, self.scheduler, self.workers = address, scheduler, workers

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=20, set_as_default=False)


def _spawn(args, log, cache):
    # workers import this worktree's asqhw/hdl/ (and this module, for the plugin below) and
    # keep their scratch directories in `cache`
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
               ASQHW_CACHE=str(cache))
    env.pop(ENV, None)
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask")
    log = open(d / "cluster.log", "wb")
    info = d / "scheduler.json"
    http = ["--no-dashboard", "--dashboard-address", f"{LOOPBACK}:0"]   # HTTP on loopback too
    scheduler = _spawn(["distributed.cli.dask_scheduler", "--host", LOOPBACK, "--port", "0", *http,
                        "--scheduler-file", str(info)], log, d / "cache")
    procs = [scheduler]
    try:
        deadline = time.monotonic() + 60
        while not (info.exists() and info.stat().st_size):
            assert scheduler.poll() is None and time.monotonic() < deadline, "scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        assert address.startswith(f"tcp://{LOOPBACK}:")
        workers = [_spawn(["distributed.cli.dask_worker", address, "--host", LOOPBACK,
                           "--nthreads", "1", "--no-nanny", *http, "--name", f"w{i}"], log,
                          d / "cache")
                   for i in range(2)]
        procs += workers
        cl = Cluster(address, scheduler, workers)
        with cl.client() as c:
            c.wait_for_workers(2, timeout=60)
        yield cl
    finally:
        for p in reversed(procs):
            _stop(p)
        log.close()


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    return run_synth(configs(), ["ice40-up5k"], seeds=1, jobs=2, outdir=root / "out",
                     cache_dir=root / "cache", progress=None)


# ---- the default needs no set-up -----------------------------------------------------------

def test_default_runner_is_an_in_process_cluster_without_network(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with JobRunner(jobs=2) as runner:
        assert not runner.remote and runner.address.startswith("inproc://")
        assert sum(runner.client.nthreads().values()) == 2
        runner.submit(pow, 2, 10, tag="p")
        (outcome,) = list(runner.results())
    assert (outcome.tag, outcome.value, outcome.error) == ("p", 1024, None)


def test_a_failing_task_comes_back_as_a_one_line_error():
    with JobRunner() as runner:
        runner.submit(int, "x", tag="bad")
        runner.submit(int, "7", tag="good")
        outcomes = {o.tag: o for o in runner.results()}
    assert outcomes["good"].value == 7 and outcomes["good"].error is None
    assert outcomes["bad"].value is None and outcomes["bad"].error.startswith("ValueError: ")


def test_a_failed_task_is_reported_in_its_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from asqhw.hdl import synth_tools

    real = synth_tools.run_yosys
    label_of = {to_verilog(c)[0]: c.label for c in configs()}

    def broken(verilog, family, **kwargs):            # the b_w=3 task fails on its worker
        if "b_w=3" in label_of[verilog]:
            raise RuntimeError("the worker's disk is gone")
        return real(verilog, family, **kwargs)

    monkeypatch.setattr(synth_tools, "run_yosys", broken)
    rows = run_synth(configs(), ["xilinx"], outdir=tmp_path / "out", cache_dir=tmp_path / "cache",
                     progress=None)
    ok, bad = rows
    assert ok["error"] is None and ok["lut"] > 0
    assert bad["error"] == "yosys task failed: RuntimeError: the worker's disk is gone"
    assert "yosys task failed" in (tmp_path / "out" / "synth.md").read_text()


def test_conform_reports_a_failed_rtl_task_in_its_row_and_exits_1(tiny_case, capsys, monkeypatch):
    from asqhw.cli.main import main
    from asqhw.hdl import cosim

    def lost(*args):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(cosim, "_simulate", lost)
    code = main(["conform", "-q", "--rtl", "--simulator", "amaranth", str(tiny_case)])
    out = capsys.readouterr().out
    assert code == 1
    assert "RTL ERROR tiny_uniform_linear: RuntimeError: worker lost" in out
    assert out.rstrip().endswith("FAIL: RTL runs failed")


def test_a_task_whose_workers_all_died_is_described_as_such():
    from distributed.scheduler import KilledWorker

    from asqhw.hdl.jobs import describe_failure

    from types import SimpleNamespace

    worker = SimpleNamespace(address="tcp://127.0.0.1:4000")
    text = describe_failure(KilledWorker("asqhw-nextpnr-1", worker, 3))
    assert text == "its worker died while running it, 4 times (last on tcp://127.0.0.1:4000)"


def test_unreachable_scheduler_is_a_user_error():
    with socket.socket() as s:              # a loopback port with nobody listening
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=f"cannot connect to the Dask scheduler at tcp://{LOOPBACK}:{port}"):
        JobRunner(scheduler=f"tcp://{LOOPBACK}:{port}", connect_timeout=1)


# ---- through the scheduler -------------------------------------------------------------------

def test_sweep_through_the_scheduler_equals_the_local_run(cluster, local_rows, tmp_path):
    lines = []
    rows = run_synth(configs(), ["ice40-up5k"], seeds=1, outdir=tmp_path / "out",
                     cache_dir=tmp_path / "cache", progress=lines.append, scheduler=cluster.address)
    assert rows == local_rows
    assert all(r["error"] is None and r["fmax_mhz"] > 0 for r in rows)
    assert len(lines) == 4 and not any(line.endswith("(cached)") for line in lines)
    # the client alone wrote the cache: a rerun submits nothing and finds every result
    again = []
    assert run_synth(configs(), ["ice40-up5k"], seeds=1, outdir=tmp_path / "out", force=True,
                     cache_dir=tmp_path / "cache", progress=again.append,
                     scheduler=cluster.address) == rows
    assert len(again) == 4 and all(line.endswith("(cached)") for line in again)


def test_environment_variable_names_the_scheduler(cluster, monkeypatch):
    monkeypatch.setenv(ENV, cluster.address)
    with JobRunner() as runner:
        assert runner.remote and runner.address == cluster.address
        workers = runner.on_workers(os.getpid)
    assert len(workers) == 2 and os.getpid() not in workers.values()


def test_missing_tool_on_a_worker_is_reported_once_before_any_work(cluster, tmp_path):
    with JobRunner(scheduler=cluster.address) as runner:
        with pytest.raises(UserError, match="on Dask worker tcp://127.0.0.1:.*yowasp-nope not found"):
            runner.on_workers(__import__("asqhw.hdl.synth_tools", fromlist=["tool_versions"]).tool_versions, ["yowasp-nope"])


def test_conform_rtl_through_the_scheduler_equals_the_local_run(cluster, tmp_path):
    from test_cosim import linear, make_case

    make_case(tmp_path, "u4", Datapath("uniform", 4, 4), linear(9, 3), seed=1)
    make_case(tmp_path, "p4", Datapath("pot", 4, 4), linear(7, 2), seed=2)
    cases = load_cases([tmp_path])
    # Amaranth's simulator: a Verilator build takes a minute on a busy 2-core machine
    local = run_cases_rtl(cases, lanes=2, simulator="amaranth")
    remote = run_cases_rtl(cases, lanes=2, simulator="amaranth", scheduler=cluster.address)
    for case, a, b in zip(cases, local, remote):
        assert b.error is None and not b.missing and compare(case, b.acc, b.y).ok
        assert np.array_equal(a.acc, b.acc) and np.array_equal(a.y, b.y) and a.cycles == b.cycles


def test_conform_command_takes_the_scheduler_option(cluster, tiny_case, capsys):
    from asqhw.cli.main import main

    code = main(["conform", "-q", "--rtl", "--simulator", "amaranth", "--lanes", "2",
                 "--scheduler", cluster.address, str(tiny_case)])
    out = capsys.readouterr().out
    assert code == 0 and "RTL (amaranth): 0 mismatches" in out and "PASS" in out


# ---- last: a worker dies mid-sweep -------------------------------------------------------------

class DieOnFirstNextpnr(WorkerPlugin):
    """Worker plugin: the first worker to start a nextpnr task kills itself (SIGKILL) right then."""

    name = "die-on-first-nextpnr"

    def __init__(self, marker):
        self.marker = str(marker)

    def setup(self, worker):
        self.address = worker.address

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or "nextpnr" not in str(key):
            return
        try:                                   # one death in the whole cluster
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, json.dumps({"key": str(key), "worker": self.address}).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_task_is_survived_and_its_task_retried(cluster, local_rows, tmp_path):
    marker = tmp_path / "killed.json"
    with cluster.client() as watch, get_task_stream(client=watch) as stream:
        watch.register_plugin(DieOnFirstNextpnr(marker))
        rows = run_synth(configs()[:1], ["ice40-up5k"], seeds=2, outdir=tmp_path / "out",
                         cache_dir=tmp_path / "cache", progress=None, scheduler=cluster.address)
    killed = json.loads(marker.read_text())
    assert sum(p.poll() is not None for p in cluster.workers) == 1       # one worker died ...
    ran_on = {str(t["key"]): t["worker"] for t in stream.data}
    assert ran_on[killed["key"]] != killed["worker"]                      # ... its task ran elsewhere
    (row,) = rows
    assert row["error"] is None and len(row["fmax_seeds"]) == 2
    assert row["fmax_seeds"][0] == local_rows[0]["fmax_seeds"][0]   # seed 1 as in the local run
    same = ("label", "lut", "carry", "ff", "dsp", "cells", "io_bits", "timeouts")
    assert {k: row[k] for k in same} == {k: local_rows[0][k] for k in same}
