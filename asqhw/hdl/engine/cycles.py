"""Exact cycle count of one engine run, from the layer shape, ``lanes`` and the entry counts.

Timeline of ``hdl.engine.top.Engine`` (cycle 0 samples ``start``; derivation in
docs/engine.md):

- each output channel costs 2 cycles to fetch its word (``HDR``, ``LOAD``) before its
  first tile may start;
- a tile of channel ``c`` issues ``n_c`` entries on consecutive cycles (``n_c`` =
  entries in its term list, :func:`hdl.engine.program.channel_entries`);
- the tile's accumulators are captured ``n_c + 2`` cycles after it starts, and the drain
  then needs ``nv + 1`` cycles (one channel-word read, ``nv`` valid lanes); a tile
  starts no earlier than ``i0_prev + n_prev + nv_prev + 1 - n_c``, so the next capture
  never meets a busy drain;
- ``done`` is high ``n_c + nv + 4 + rq_pipeline`` cycles after the last tile starts
  (capture, the channel-word read, the requantiser's ``rq_pipeline`` registers, the
  output write, the FSM's done register).

Within a channel tile ``j + 1`` therefore starts ``max(n_c, nv_j + 1)`` cycles after tile
``j``: the array is drain-bound when a tile has fewer entries than valid lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunCycles", "run_cycles", "io_cycles", "FETCH_CYCLES", "DONE_AFTER", "formula_text"]

FETCH_CYCLES = 2     # HDR + LOAD per channel
START_CYCLES = 1     # the cycle that samples start
DONE_AFTER = 4       # done = i0_last + n_last + nv_last + DONE_AFTER + rq_pipeline

formula_text = (
    "cycles = i0_last + n_last + nv_last + 4 + rq_pipeline, where channel c's first tile starts at "
    "max(t_c, i0_prev + n_prev + nv_prev + 1 - n_c) with t_c = (end of the previous channel's "
    "issue, or 1) + 2, and tile j+1 of a channel starts max(n_c, nv_j + 1) cycles after tile j; "
    "tiles per channel = n_img * h_out * ceil(w_out / lanes), nv = lanes except w_out - "
    "(ceil(w_out/lanes) - 1) * lanes in a row's last tile; n_c = entries of channel c's term list")


@dataclass
class RunCycles:
    """Cycle figures of one run."""

    cycles: int          # start to done
    issue: int           # cycles in which an entry was issued
    tiles: int           # tiles per channel
    tiles_x: int
    work: int = 0        # lane-cycles on valid outputs: sum over tiles of n_c * nv

    @property
    def stalls(self) -> int:
        """Cycles without an issued entry (channel fetch, drain waits, pipeline tail)."""
        return self.cycles - self.issue


def run_cycles(lanes: int, geometry: dict, counts, rq_pipeline: int = 1) -> RunCycles:
    """Cycles from ``start`` to ``done`` for entry counts ``counts`` (one per output channel).

    Parameters
    ----------
    lanes : int
    geometry : dict
        ``LayerShape.engine_geometry`` (``n_img``, ``h_out``, ``w_out`` are used).
    counts : sequence of int or float
        Entries per channel; floats give the expectation under a stated weight model.
    rq_pipeline : int
        Register stages of the requantiser (``EngineConfig.rq_pipeline``).
    """
    rows = geometry["n_img"] * geometry["h_out"]
    w_out = geometry["w_out"]
    tiles_x = -(-w_out // lanes)
    last_l = w_out - (tiles_x - 1) * lanes
    t = START_CYCLES
    prev = None
    issue = 0
    work = 0
    n_tiles = rows * tiles_x
    for n in counts:
        t += FETCH_CYCLES
        i0 = t if prev is None else max(t, prev[0] + prev[1] + prev[2] + 1 - n)
        g_full, g_last = max(n, lanes + 1), max(n, last_l + 1)
        i0_last = i0 + rows * ((tiles_x - 1) * g_full + g_last) - g_last
        t = i0_last + n
        prev = (i0_last, n, last_l)
        issue += n * n_tiles
        work += n * rows * w_out
    cycles = prev[0] + prev[1] + prev[2] + DONE_AFTER + rq_pipeline
    return RunCycles(cycles=cycles, issue=issue, tiles=n_tiles, tiles_x=tiles_x, work=work)



def io_cycles(n_terms: int, act_words: int, channels: int, out_words: int) -> tuple[int, int]:
    """Cycles to load the memories and to drain the outputs, when not overlapped with a run.

    The three load streams run in parallel at one word per cycle each (the engine is
    always ready when idle): ``max(n_terms, act_words, channels)``. The output stream
    delivers one code per cycle from the cycle after ``done``: ``out_words``.
    """
    return max(n_terms, act_words, channels), out_words
