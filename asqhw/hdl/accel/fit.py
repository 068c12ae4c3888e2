"""Every on-chip memory of an accelerator build, by kind, and whether it fits a device's block RAM.

Kinds: ``weights`` (ROMs: each engine's term memory, the channel words, the adapter's weights,
requantiser words and static multipliers), ``engine`` (each engine's working memories: the
channel memory loaded per layer, its banked activation buffer and its output buffer),
``tensors`` (``tmem``: the input, every wide tensor and stored codes, 16 bits a word; the wide
tensor waits here while the adapter computes ``beta``), ``tables`` (descriptors, the ``M_n``
RAM, the adapter unit's own memories).

Block counts are per memory, each in the block geometry that needs the fewest blocks (iCE40
4 kbit: 256x16, 512x8, 1024x4, 2048x2; ECP5 18 kbit: 512x36, 1024x18, 2048x9, 4096x4, 8192x2,
16384x1). Memories without an initial value may go to the UP5K's four 16k x 16 SPRAMs instead.
Memories read combinationally (the adapter unit's) or at most 64 words deep are counted as
logic bits (flip-flops or LUT RAM), not block RAM. Logic (LUTs, DSPs) is not estimated here:
that is a synthesis result.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.adapter_unit import Q_BITS, s_bits
from .program import AccelProgram, desc_bits

__all__ = ["MemoryUse", "memories", "by_kind", "DEVICES", "blocks", "fit", "fit_line"]


@dataclass(frozen=True)
class MemoryUse:
    name: str
    kind: str
    depth: int
    width: int
    rom: bool
    holds: str
    logic: bool = False      # read combinationally or at most 64 deep: flip-flops / LUT RAM, not block RAM
    copies: int = 1          # identical memories (the banks of an activation buffer)

    @property
    def bits(self) -> int:
        return self.depth * self.width * self.copies


DEVICES = {
    "ice40up5k": {"bram_bits": 4096, "brams": 30, "geoms": ((256, 16), (512, 8), (1024, 4), (2048, 2)),
                  "spram": 4, "spram_words": 16384, "spram_width": 16, "lut": 5280, "dsp": 8},
    "ecp5-25f": {"bram_bits": 18432, "brams": 56,
                 "geoms": ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
                 "spram": 0, "spram_words": 0, "spram_width": 0, "lut": 24288, "dsp": 28},
}


def memories(prog: AccelProgram) -> list[MemoryUse]:
    """Every memory of ``prog``'s accelerator."""
    out = []
    for i, e in enumerate(prog.engines):
        c = e.ecfg
        out += [MemoryUse(f"engine{i}_terms", "weights", max(len(e.terms), 1), c.term_bits, True,
                          f"the engine's term memory, a ROM: term entries of {', '.join(e.layers)}"),
                MemoryUse(f"engine{i}_params", "weights", max(len(e.params), 1), c.param_bits, True,
                          "channel words (count, M, B, sh)"),
                MemoryUse(f"engine{i}.pmem", "engine", c.max_channels, c.param_bits, False,
                          "the running layer's channel words (M_n in place of M)"),
                MemoryUse(f"engine{i}.abank", "engine", c.bank_depth, c.dp.a_bits, False,
                          f"activation buffer ({c.lanes} banks of {c.bank_depth} codes)", copies=c.lanes),
                MemoryUse(f"engine{i}.omem", "engine", c.out_depth, c.out_bits, False, "output buffer")]
    ac = prog.ad_cfg
    out += [MemoryUse("adapter_w", "weights", ac["w_depth"], 8, True, "adapter weights w1, w2"),
            MemoryUse("adapter_q", "weights", ac["q_depth"], Q_BITS, True, "adapter requantiser words"),
            MemoryUse("adapter_m", "weights", ac["mn_depth"], 16, True, "static M of the beta_from layers"),
            MemoryUse("tmem", "tensors", prog.tmem_depth, 16, False,
                      "input codes, wide tensors, stored codes (regions by liveness)"),
            MemoryUse("descriptors", "tables", len(prog.steps), desc_bits(), True, "one descriptor per step"),
            MemoryUse("mn", "tables", ac["mn_depth"], 16, False, "per-sample multipliers M_n"),
            MemoryUse("adapter.smem", "tables", ac["max_channels"], s_bits(ac["max_hw"]), False, "pool sums S", True),
            MemoryUse("adapter.wmem", "tables", ac["max_hidden"] * ac["max_channels"] + ac["max_channels"], 8,
                      False, "loaded adapter weights", True),
            MemoryUse("adapter.qmem", "tables", 2 + ac["max_hidden"], Q_BITS, False, "loaded requantiser words", True),
            MemoryUse("adapter.mmem", "tables", ac["max_mults"], 16, False, "loaded static multipliers", True)]
    return [m if m.depth > 64 else MemoryUse(m.name, m.kind, m.depth, m.width, m.rom, m.holds, True, m.copies)
            for m in out]


def by_kind(mems) -> dict:
    """Bits per kind."""
    out: dict = {}
    for m in mems:
        out[m.kind] = out.get(m.kind, 0) + m.bits
    return out


def blocks(depth: int, width: int, geoms) -> int:
    """Fewest blocks of one geometry that hold a ``depth x width`` memory."""
    return min(-(-depth // d) * -(-width // w) for d, w in geoms)


def fit(prog: AccelProgram, device: str) -> dict:
    """Block RAM (and SPRAM) the build needs on ``device``, and whether it fits."""
    dev = DEVICES[device]
    mems = memories(prog)
    spram_left = dev["spram"]
    used, spram_used, placed, logic = 0, 0, [], 0
    for m in sorted(mems, key=lambda m: -m.bits):
        if m.logic:
            logic += m.bits
            placed.append((m.name, "logic", m.bits))
            continue
        n_sp = m.copies * -(-m.depth // dev["spram_words"]) * -(-m.width // dev["spram_width"]) if dev["spram"] else 0
        n_br = m.copies * blocks(m.depth, m.width, dev["geoms"])
        if not m.rom and dev["spram"] and n_sp <= spram_left and n_br > 2:
            spram_left -= n_sp
            spram_used += n_sp
            placed.append((m.name, "spram", n_sp))
        else:
            used += n_br
            placed.append((m.name, "bram", n_br))
    return {"device": device, "brams": used, "brams_available": dev["brams"], "sprams": spram_used,
            "sprams_available": dev["spram"], "fits": used <= dev["brams"], "placement": placed, "logic_bits": logic,
            "bits": by_kind(mems)}


def fit_line(prog: AccelProgram, device: str) -> str:
    """One line: fits, or by how much it does not."""
    f = fit(prog, device)
    kinds = ", ".join(f"{k} {v / 1024:.1f} kbit" for k, v in f["bits"].items())
    if f["fits"]:
        return (f"{prog.net.name}'s memories fit {device} (logic and DSPs: see a synthesis run): "
                f"{f['brams']} of {f['brams_available']} block RAMs"
                + (f", {f['sprams']} of {f['sprams_available']} SPRAMs" if f["sprams_available"] else "")
                + f" ({kinds})")
    return (f"{prog.net.name} does not fit {device}: needs {f['brams']} block RAMs, the device has "
            f"{f['brams_available']} ({kinds})")
