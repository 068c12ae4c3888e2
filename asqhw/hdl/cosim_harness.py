"""A generic cycle-driven Verilator C++ testbench, generated from a port list.

Stimulus file: ``uint32 n_records`` then ``n_records`` records of ``in_words``
little-endian uint32 words: every input port except ``clk``/``rst``, in port
order, each as ``ceil(width/32)`` words, least significant word first.

Each cycle the harness applies one record, evaluates with the clock low,
and, if any 1-bit output whose name ends in ``valid`` is high, writes an
output record ``uint32 cycle`` followed by every output port in the same word
layout; then it raises the clock.  Reset (``rst``) is held for two cycles
before the first record.  Output file: the records, back to back.
"""

from __future__ import annotations

__all__ = ["words", "input_ports", "output_ports", "record_columns", "harness_cpp", "HARNESS_VERSION"]

HARNESS_VERSION = 1


def words(width: int) -> int:
    """uint32 words a port of ``width`` bits takes in a record."""
    return (width + 31) // 32


def input_ports(ports: list[dict]) -> list[dict]:
    """Stimulus ports: inputs other than the clock and the reset."""
    return [p for p in ports if p["direction"] == "input" and p["name"] not in ("clk", "rst")]


def output_ports(ports: list[dict]) -> list[dict]:
    """Every output port, in order."""
    return [p for p in ports if p["direction"] == "output"]


def record_columns(raw, outs: list[dict]) -> dict:
    """The harness's output records as columns: ``cycle`` and one int64 array per output port.

    ``raw`` is the flat uint32 word stream the harness wrote, one record per sampled cycle:
    the cycle number, then each port of ``outs`` in 32-bit words, least significant first.
    """
    import numpy as np

    raw = np.asarray(raw, dtype=np.int64).reshape(-1, 1 + sum(words(p["width"]) for p in outs))
    col, off = {"cycle": raw[:, 0]}, 1
    for p in outs:
        v = np.zeros(raw.shape[0], dtype=np.int64)
        for k in range(words(p["width"])):
            v |= raw[:, off + k] << (32 * k)
        col[p["name"]] = v
        off += words(p["width"])
    return col


def cxx_name(name: str) -> str:
    """Verilator's C++ member name of a port: a double underscore is escaped as ``___05F``."""
    return name.replace("__", "___05F")


def _set(name, width, off):
    name = cxx_name(name)
    if width <= 32:
        return f"    top->{name} = w[{off}];"
    if width <= 64:
        return f"    top->{name} = (QData)w[{off}] | ((QData)w[{off + 1}] << 32);"
    return "\n".join(f"    top->{name}[{i}] = w[{off + i}];" for i in range(words(width)))


def _get(name, width, off):
    name = cxx_name(name)
    if width <= 32:
        return f"    o[{off}] = (uint32_t)top->{name};"
    if width <= 64:
        return (f"    o[{off}] = (uint32_t)top->{name};\n"
                f"    o[{off + 1}] = (uint32_t)(top->{name} >> 32);")
    return "\n".join(f"    o[{off + i}] = top->{name}[{i}];" for i in range(words(width)))


_TEMPLATE = r"""// asq-hw generic cosimulation harness v@VERSION@ for module @TOP@ (generated; do not edit).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "verilated.h"
#include "V@TOP@.h"

static const int IN_WORDS = @IN_WORDS@;
static const int OUT_WORDS = @OUT_WORDS@;

int main(int argc, char** argv) {
    if (argc != 3) { std::fprintf(stderr, "usage: %s STIMULUS OUTPUT\n", argv[0]); return 2; }
    FILE* fin = std::fopen(argv[1], "rb");
    if (!fin) { std::perror(argv[1]); return 2; }
    uint32_t n = 0;
    if (std::fread(&n, 4, 1, fin) != 1) { std::fprintf(stderr, "short stimulus\n"); return 2; }
    std::vector<uint32_t> stim((size_t)n * IN_WORDS);
    if (n && std::fread(stim.data(), 4, stim.size(), fin) != stim.size()) {
        std::fprintf(stderr, "short stimulus\n"); return 2;
    }
    std::fclose(fin);
    FILE* fout = std::fopen(argv[2], "wb");
    if (!fout) { std::perror(argv[2]); return 2; }

    VerilatedContext* ctx = new VerilatedContext;
    V@TOP@* top = new V@TOP@{ctx};
@HAS_RST_BEGIN@    top->rst = 1;
    for (int i = 0; i < 2; i++) { top->clk = 0; top->eval(); top->clk = 1; top->eval(); }
    top->rst = 0;
@HAS_RST_END@    std::vector<uint32_t> out((size_t)OUT_WORDS + 1);
    for (uint32_t c = 0; c < n; c++) {
        const uint32_t* w = &stim[(size_t)c * IN_WORDS];
@SET_INPUTS@
        top->clk = 0;
        top->eval();
        if (@ANY_VALID@) {
            uint32_t* o = &out[1];
            out[0] = c;
@GET_OUTPUTS@
            std::fwrite(out.data(), 4, out.size(), fout);
        }
        top->clk = 1;
        top->eval();
    }
    top->final();
    std::fclose(fout);
    delete top;
    delete ctx;
    return 0;
}
"""


def harness_cpp(top: str, ports: list[dict], triggers=None) -> str:
    """C++ source of the harness for module ``top`` with the given port list.

    ``triggers``: names of the 1-bit outputs that make a cycle be recorded (default: every
    1-bit output whose name ends in ``valid``).
    """
    names = {p["name"] for p in ports}
    if "clk" not in names:
        raise ValueError(f"module {top} has no clk port; the harness drives a clocked design")
    ins, outs = input_ports(ports), output_ports(ports)
    if triggers is None:
        valids = [p["name"] for p in outs if p["width"] == 1 and p["name"].endswith("valid")]
    else:
        valids = [p["name"] for p in outs if p["width"] == 1 and p["name"] in triggers]
    if not valids:
        raise ValueError(f"module {top} has no 1-bit trigger output")
    set_lines, off = [], 0
    for p in ins:
        set_lines.append(_set(p["name"], p["width"], off))
        off += words(p["width"])
    in_words = off
    get_lines, off = [], 0
    for p in outs:
        get_lines.append(_get(p["name"], p["width"], off))
        off += words(p["width"])
    has_rst = "rst" in names
    text = (_TEMPLATE.replace("@VERSION@", str(HARNESS_VERSION)).replace("@TOP@", top)
            .replace("@IN_WORDS@", str(in_words)).replace("@OUT_WORDS@", str(off))
            .replace("@SET_INPUTS@", "\n".join("    " + ln for ln in "\n".join(set_lines).splitlines()))
            .replace("@GET_OUTPUTS@", "\n".join("        " + ln for ln in "\n".join(get_lines).splitlines()))
            .replace("@ANY_VALID@", " || ".join(f"top->{cxx_name(v)}" for v in valids)))
    if has_rst:
        text = text.replace("@HAS_RST_BEGIN@", "").replace("@HAS_RST_END@", "")
    else:
        start, end = text.index("@HAS_RST_BEGIN@"), text.index("@HAS_RST_END@")
        text = text[:start] + text[end + len("@HAS_RST_END@"):]
    return text
