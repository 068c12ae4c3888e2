"""Verilog, JSON sidecar and FuseSoC core file of an engine build."""

from __future__ import annotations

import json
from pathlib import Path

from asqhw import __version__
from asqhw.core.spec import SPEC_VERSION
from asqhw.core.atomic import check_target, ensure_dir, write_text

from ..lint_waivers import scope_waivers, scoped_header
from ..verilog import convert, datapath_args, ports_of
from .cycles import formula_text
from .params import M_BITS, EngineConfig
from .top import Engine

__all__ = ["module_name", "command_line", "render", "generate", "generate_from_args", "core_text"]


def module_name(ecfg: EngineConfig) -> str:
    """Stable module name from every parameter that changes the design."""
    return f"asqhw_engine_{ecfg.tag()}"


def command_line(ecfg: EngineConfig) -> str:
    """The ``asqhw verilog --unit engine`` command line that regenerates ``ecfg``."""
    args = ["asqhw", "verilog", "--unit", "engine"] + datapath_args(ecfg.dp)
    args += ["--lanes", str(ecfg.lanes), "--acc-bits", str(ecfg.acc_bits),
             "--out-bits", str(ecfg.out_bits)]
    if ecfg.out_signed:
        args += ["--out-signed"]
    args += ["--schedule", ecfg.schedule, "--act-depth", str(ecfg.act_depth),
             "--term-depth", str(ecfg.term_depth), "--out-depth", str(ecfg.out_depth),
             "--max-channels", str(ecfg.max_channels)]
    if ecfg.rq_pipeline != 1:
        args += ["--rq-pipeline", str(ecfg.rq_pipeline)]
    args += ["-o", "OUT/"]
    return " ".join(args)


def _params(ecfg: EngineConfig) -> dict:
    dp = ecfg.dp
    return {"unit": "engine", "fmt": dp.fmt, "arch": dp.arch, "a_bits": dp.a_bits,
            "a_signed": dp.a_signed, "w_bits": dp.w_bits, "e_max": dp.e_max,
            "frac_bits": dp.frac_bits, "storage_bits": dp.storage_bits, "lanes": ecfg.lanes,
            "acc_bits": ecfg.acc_bits, "n_acc": dp.n_acc, "out_bits": ecfg.out_bits,
            "out_signed": ecfg.out_signed, "schedule": ecfg.schedule,
            "act_depth": ecfg.act_depth, "term_depth": ecfg.term_depth,
            "out_depth": ecfg.out_depth, "max_channels": ecfg.max_channels,
            "rq_pipeline": ecfg.rq_pipeline}


# --- integration facts for the sidecar (docs/engine.md, "Integrating the engine") ----------
_LAYER_ENCODING = ("every layer field is the value itself (a count is a count, never count - 1); "
                   "pack each at its offset into the layer port and hold it from start to done")
_LAYER_MEANING = {
    "n_chan": "output channels C_out (1 .. max_channels)",
    "n_img": "images N (conv2d); 1 for linear",
    "h_out": "output rows H_o (conv2d); 1 for linear",
    "tiles_x": "tiles per output row: ceil(w_out / lanes), w_out = W_o (conv2d) or N (linear)",
    "last_lanes": "valid lanes of a row's last tile: w_out - (tiles_x - 1) * lanes (1 .. lanes)",
    "row_step": "stride * Wr: activation addresses between two output rows",
    "img_step": "C_in * Hp * Wr: activation addresses between two images",
}
_CHANNEL_MEANING = {
    "count": {"meaning": "entries of this channel's term list (>= 1; a count, not count - 1)"},
    "m": {"meaning": "M[k] of accumulator k at bits 16k .. 16k+15 of this field (M[0] lowest)"},
    "b": {"meaning": "bias B, two's complement", "signed": True},
    "sh": {"meaning": "right shift sh (0 .. 62)"},
}
_ACTIVATION = {
    "address": "((n*C_in + ci)*Hp + y)*Wr + (x mod st)*Wq + x div st; Hp = H + 2 pad, Wp = W + 2 pad, "
               "Wq = ceil(Wp / st), Wr = st*Wq; linear: the 1 x N image of K channels, address k*N + n",
    "padding": "padding rows and columns (pad) hold code 0; the Wr - Wp columns after Wp hold 0 "
               "(no valid output lane reads them, so any value gives the same outputs)",
    "code": "the raw a_bits pattern of the code (two's complement when a_signed)",
    "banks": "bank = address mod lanes, row = address div lanes; the a_in stream fills addresses 0, 1, 2, ...",
}
_STREAMS = {
    "convention": "AXI-Stream: a word moves in a cycle with valid and ready both high at the rising edge of clk; "
                  "valid never waits for ready, and ready never depends on valid",
    "w_in": "fills the term memory from address 0, one entry per transfer",
    "a_in": "fills the activation buffer from address 0, one code per transfer",
    "p_in": "fills the channel memory from address 0, one channel word per transfer",
    "inputs": "ready = not busy: high in idle (and in the cycle that samples start), low from the cycle after "
              "start until done; the three load addresses are independent, return to 0 at reset and in the "
              "cycle done is high (not at start: load every memory once per run, or only those that change "
              "after a run)",
    "y_out": "after done: valid from the cycle after done while unread codes remain; honours ready (payload "
             "and valid hold while ready is low); one code per cycle when ready stays high; a new start "
             "discards unread codes",
    "start": "sampled in idle only; done is high for one cycle when the output buffer is complete",
}


def _payload_fields(ecfg: EngineConfig) -> list[dict]:
    """The payload bits of a term entry, named (the offset is above them)."""
    if not ecfg.grouped:
        return [{"name": "code", "offset": 0, "width": ecfg.payload_bits,
                 "meaning": "the weight code as stored in a case file (w & (2^storage_bits - 1))"}]
    fields = [{"name": "neg", "offset": 0, "width": 1, "meaning": "add -A instead of +A"},
              {"name": "zero", "offset": 1, "width": 1, "meaning": "add 0 (a shift-only entry or an all-zero channel)"},
              {"name": "dbl", "offset": 2, "width": 1,
               "meaning": "double every accumulator before adding (ignored on a tile's first entry, which loads)"}]
    if ecfg.one_acc:
        fields.append({"name": "park", "offset": 3, "width": 1,
                       "meaning": "grouped1: after this entry's add, copy the sum (acc_1, odd W) into the lane's "
                                  "park register; the next entry starts the even-W sum (acc_0) from 0"})
    elif ecfg.dp.arch == "split":
        fields.append({"name": "k", "offset": 3, "width": 1,
                       "meaning": "accumulator 0 (even exponent W) or 1 (odd W)"})
    return fields


def _term_list_rules(ecfg: EngineConfig) -> dict:
    """How the host builds a channel's term list (hdl.engine.program.channel_entries)."""
    dp = ecfg.dp
    rules = {"memory": "the channels' lists back to back from address 0, channel 0 first; channel c starts "
                       "at the sum of the counts of channels 0 .. c-1",
             "offset": "((g*C_in/G + j)*Hp + ky)*Wr + (kx mod st)*Wq + kx div st for weight w[c][j][ky][kx] of "
                       "group g = c div (C_out/G); linear: j*N for weight w[c][j]",
             "first_entry": "the first entry of a tile loads: acc_k = its product (0 for the other accumulator); "
                            "the others add"}
    if not ecfg.grouped:
        rules["entries"] = "one entry per nonzero weight, in w[c].ravel() order (j, ky, kx)"
        rules["all_zero_channel"] = "one entry, the word 0 (code 0, offset 0)"
        return rules
    if dp.fmt == "uniform":
        lvl = "one term per set bit b of |q| (bit planes), level s = b, neg = (q < 0)"
    elif dp.arch == "shift":
        lvl = "m = code & (2^(storage_bits-1) - 1), neg = code >> (storage_bits-1); m = 0 is no term; W = m - 1, level s = e_max - W"
    else:
        lvl = ("m = code & (2^(storage_bits-1) - 1), neg = code >> (storage_bits-1); m = 0 is no term; W = m - 1, "
               "level s = frac_bits - floor(W/2), k = W mod 2")
    rules["terms"] = lvl
    rules["entries"] = ("terms sorted by decreasing level s (ties: by the weight's index in w[c].ravel(), "
                        "any order gives the same result); the first term of each level after the first has "
                        "dbl = 1 and is preceded by d - 1 shift-only entries when the level drops by d; after "
                        "the last term, s_last shift-only entries (s_last = the last level); so each term ends "
                        "multiplied by 2^s")
    rules["shift_only_entry"] = "zero = 1, dbl = 1, neg = 0, k = 0, offset 0 (payload 0b0110)"
    rules["all_zero_channel"] = "one entry with zero = 1 only (payload 0b0010, offset 0)"
    if ecfg.one_acc:
        rules["entries"] = ("grouped1: the list of the odd-W terms (k = 1), its last entry with park = 1 "
                            "(a lone zero entry, payload 0b1010, when there is no odd-W term), then the list of the "
                            "even-W terms (k = 0; a lone zero entry, payload 0b0010, when there is none); bit 3 is "
                            "park, not k; each list: " + rules["entries"])
        rules["shift_only_entry"] = "zero = 1, dbl = 1, neg = 0, offset 0 (payload 0b0110, 0b1110 if it parks)"
        rules["all_zero_channel"] = "two entries: payload 0b1010 (park) then 0b0010, offset 0"
        rules["first_entry"] = ("grouped1: the first entry of a tile and the entry after the park entry load "
                                "(the one accumulator = its product; dbl ignored); the others add")
    return rules


def render(ecfg: EngineConfig, command: str | None = None) -> tuple[str, dict]:
    """Verilog text and sidecar dict of one engine (nothing written)."""
    module = module_name(ecfg)
    params = _params(ecfg)
    cmd = " ".join(command.split()) if command is not None else command_line(ecfg)
    text = scoped_header(module, cmd, params) + scope_waivers(convert(Engine(ecfg), module))
    layout = [{"name": name, "offset": f.offset, "width": f.width}
              for name, f in ecfg.layer_layout()]
    words = {"term": {"width": ecfg.term_bits, "depth": ecfg.term_depth,
                      "fields": {"payload": [0, ecfg.payload_bits],
                                 "offset": [ecfg.payload_bits, ecfg.act_addr_bits]}},
             "activation": {"width": ecfg.dp.a_bits, "depth": ecfg.act_depth,
                            "read_ports": ecfg.lanes},
             "channel": {"width": ecfg.param_bits, "depth": ecfg.max_channels,
                         "fields": [{"name": n, "offset": f.offset, "width": f.width}
                                    for n, f in ecfg.param_layout()]},
             "output": {"width": ecfg.out_bits, "depth": ecfg.out_depth}}
    words["term"]["payload_fields"] = _payload_fields(ecfg)
    words["term"]["list"] = _term_list_rules(ecfg)
    for f in words["channel"]["fields"]:
        f.update(_CHANNEL_MEANING[f["name"]])
        if f["name"] == "m":
            f["parts"] = [{"name": f"M[{k}]", "offset": f["offset"] + k * M_BITS, "width": M_BITS,
                           "meaning": f"multiplier of accumulator {k} (unsigned)"}
                          for k in range(ecfg.n_acc)]
    words["channel"]["order"] = "one word per output channel c = 0 .. n_chan-1, from address 0"
    words["output"]["order"] = ("y[c][n][oy][ox] from address 0 (linear: y[c][n]); codes of out_bits, "
                                "two's complement when out_signed")
    for f in layout:
        f["meaning"] = _LAYER_MEANING[f["name"]]
    sidecar = {"module": module, "spec_version": SPEC_VERSION, "generator": f"asq-hw {__version__}",
               "command": cmd, "parameters": params, "clock": "clk", "reset": "rst",
               "reset_kind": "synchronous, active high", "ports": ports_of(text, module),
               "layer_fields": layout, "memories": words,
               "memory_bits": ecfg.memory_bits(), "requant_pipeline": ecfg.rq_pipeline,
               "cycle_formula": formula_text, "verilog": f"{module}.v",
               "core": f"{module}.core", "layer_encoding": _LAYER_ENCODING,
               "activation_layout": _ACTIVATION,
               "streams": _STREAMS}
    return text, sidecar


def core_text(sidecar: dict) -> str:
    """A FuseSoC CAPI2 core file for the generated Verilog, on the flow API (``flow``/``flow_options``).

    Targets: ``default`` (the fileset and top level, for cores that depend on this one) and
    ``lint`` (the Edalize ``lint`` flow in Verilator with ``-Wall``).
    """
    module = sidecar["module"]
    p = sidecar["parameters"]
    return (f"CAPI=2:\n"
            f"# Generated by {sidecar['generator']} (datapath spec {sidecar['spec_version']}).\n"
            f"# Command: {sidecar['command']}\n"
            f"name: asqhw:engine:{module}:{__version__}\n"
            f"description: asq-hw layer engine ({p['fmt']} {p['arch']}, {p['lanes']} lanes)\n\n"
            f"filesets:\n  rtl:\n    files:\n      - {sidecar['verilog']}\n"
            f"    file_type: verilogSource\n\n"
            f"targets:\n"
            f"  default:\n    filesets: [rtl]\n    toplevel: {module}\n"
            f"  lint:\n    filesets: [rtl]\n    toplevel: {module}\n"
            f"    flow: lint\n    flow_options:\n      tool: verilator\n      verilator_options: [-Wall]\n")


def generate(ecfg: EngineConfig, outdir, *, force: bool = False, command: str | None = None) -> list[Path]:
    """Write ``<module>.v``, ``<module>.json`` and ``<module>.core`` into ``outdir``.

    Existing files are not overwritten without ``force`` (UserError naming the file).
    """
    text, sidecar = render(ecfg, command)
    outdir = Path(outdir)
    module = sidecar["module"]
    paths = [outdir / f"{module}.v", outdir / f"{module}.json", outdir / f"{module}.core"]
    for p in paths:
        check_target(p, force)
    ensure_dir(outdir)
    write_text(paths[0], text, force=force)
    write_text(paths[1], json.dumps(sidecar, indent=1, sort_keys=True) + "\n", force=force)
    write_text(paths[2], core_text(sidecar), force=force)
    return paths


def generate_from_args(args, dp, acc_bits: int, command: str) -> list[Path]:
    """``asqhw verilog --unit engine``: the EngineConfig from the parsed arguments, written."""
    ecfg = EngineConfig(dp, args.lanes, acc_bits, args.out_bits, args.out_signed, args.schedule,
                        act_depth=args.act_depth, term_depth=args.term_depth,
                        out_depth=args.out_depth, max_channels=args.max_channels,
                        rq_pipeline=args.rq_pipeline)
    return generate(ecfg, args.out, force=args.force, command=command)
