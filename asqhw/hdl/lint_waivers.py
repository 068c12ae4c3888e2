"""Verilator lint waivers scoped to the constructs yosys writes, not to a whole file.

yosys' ``write_verilog`` of an Amaranth design draws four Verilator ``-Wall`` warnings that
are the intended semantics, not bugs (``asqhw.hdl.verilog.LINT_WAIVERS`` says why for each).
:func:`scope_waivers` waives each rule only on the lines of the construct that causes it, so
any other line of the file is linted in full:

- ``WIDTHEXPAND`` on an ``assign`` whose right-hand side is one operator cell (``a OP b`` or
  ``OP a``, OP an arithmetic, comparison, bitwise or shift operator): yosys writes each
  Amaranth operator as one assign whose operands keep their cell-input widths. A plain
  ``assign a = b;``, an instance's port connection or a procedural assignment is checked.
- ``UNUSEDSIGNAL`` on the declaration of an internal ``wire`` (not a port of the module):
  yosys keeps Amaranth's named signals and full-width operator results. Ports and ``reg``
  declarations are checked (an unused input of the top module is reported).
- ``PROCASSINIT`` on a ``reg`` declaration with an initialiser (Amaranth's power-up value).
- ``DECLFILENAME`` on the ``module`` line of a submodule (``<top>.<instance path>``); the top
  module must match its file name.

Consecutive lines of one kind share one ``lint_off``/``lint_on`` pair. :func:`count_waivers`
counts the waived lines per rule (the tests bound them).
"""

from __future__ import annotations

import re

__all__ = ["WAIVED_RULES", "scope_waivers", "count_waivers", "classify", "scoped_header"]

WAIVED_RULES = ("WIDTHEXPAND", "UNUSEDSIGNAL", "PROCASSINIT", "DECLFILENAME")

# Top-level binary operators as yosys writes them: surrounded by single spaces. An escaped
# identifier ends at whitespace, so " + " cannot occur inside an operand.
_BINOPS = ("+", "-", "*", "/", "%", "==", "!=", "===", "!==", "<", "<=", ">", ">=", "&", "|",
           "^", "~^", "^~", "<<", ">>", "<<<", ">>>", "&&", "||")
_BINOP_RE = re.compile(r" (" + "|".join(re.escape(o) for o in sorted(_BINOPS, key=len, reverse=True))
                       + r") ")
_UNOP_RE = re.compile(r"^(-|~|!|&|\||\^|~&|~\||~\^) ")
_DECL_RE = re.compile(r"^\s*(input|output|inout|wire|reg)\b(?:\s+signed)?\s*(?:\[[^\]]*\]\s*)?(\\\S+|\w+)")
_MODULE_RE = re.compile(r"^module\s+(\\\S+|\w+)\s*\(")


def _operator_assign(line: str) -> bool:
    """True if ``line`` is ``assign LHS = <one operator cell>;``."""
    s = line.strip()
    if not s.startswith("assign ") or not s.endswith(";") or " = " not in s:
        return False
    rhs = s[s.index(" = ") + 3:-1].strip()
    if "?" in rhs.split():                  # a multiplexer: equal widths, never waived
        return False
    return len(_BINOP_RE.findall(rhs)) == 1 or bool(_UNOP_RE.match(rhs))


def _module_ports(lines: list[str], start: int) -> set[str]:
    """Names declared ``input``/``output``/``inout`` in the module that starts at ``start``."""
    ports = set()
    for ln in lines[start + 1:]:
        if ln.startswith("endmodule"):
            break
        m = _DECL_RE.match(ln)
        if m and m.group(1) in ("input", "output", "inout"):
            ports.add(m.group(2))
    return ports


def classify(lines: list[str]) -> list[tuple[str, ...]]:
    """Rules waived on each line of a yosys Verilog text (``()`` for a line linted in full)."""
    out: list[tuple[str, ...]] = []
    ports: set[str] = set()
    top = None
    for i, ln in enumerate(lines):
        rules: tuple[str, ...] = ()
        m = _MODULE_RE.match(ln)
        if m:
            ports = _module_ports(lines, i)
            if top is None:
                top = m.group(1)
            else:
                rules = ("DECLFILENAME",)
        else:
            d = _DECL_RE.match(ln)
            if d and d.group(1) == "wire" and d.group(2) not in ports:
                rules = ("UNUSEDSIGNAL",)
            elif d and d.group(1) == "reg" and re.search(r"=\s*[^;]+;\s*$", ln):
                rules = ("PROCASSINIT",)
            elif _operator_assign(ln):
                rules = ("WIDTHEXPAND",)
        out.append(rules)
    return out


def scope_waivers(text: str) -> str:
    """``text`` with a ``lint_off``/``lint_on`` pair around each run of lines of one waived construct."""
    lines = text.split("\n")
    kinds = classify(lines)
    out: list[str] = []
    current: tuple[str, ...] = ()
    for ln, rules in zip(lines, kinds):
        if rules != current:
            out += [f"/* verilator lint_on {r} */" for r in current]
            out += [f"/* verilator lint_off {r} */" for r in rules]
            current = rules
        out.append(ln)
    if current:
        # close before the trailing newline of the text
        tail = out.pop() if out and out[-1] == "" else None
        out += [f"/* verilator lint_on {r} */" for r in current]
        if tail is not None:
            out.append(tail)
    return "\n".join(out)


def scoped_header(module, cmd, params) -> str:
    """The opening comment of a generated file whose waivers are scoped (no file-wide ``lint_off``)."""
    import json

    from asqhw import __version__
    from asqhw.core.spec import SPEC_VERSION

    from .verilog import LINT_WAIVERS

    lines = [f"// {module}: generated by asq-hw {__version__} (datapath spec {SPEC_VERSION}).",
             f"// Command: {cmd}",
             f"// Parameters: {json.dumps(params, sort_keys=True)}",
             "// Do not edit: regenerate with the command above.",
             "// Lint waivers (Verilator -Wall): none file-wide. Each rule below is waived only on the",
             "// lines of the construct that yosys writes for it, between lint_off and lint_on:"]
    where = {"WIDTHEXPAND": "assigns of one operator cell", "UNUSEDSIGNAL": "internal wire declarations",
             "PROCASSINIT": "reg declarations with a power-up value",
             "DECLFILENAME": "submodule declarations"}
    for rule, why in LINT_WAIVERS.items():
        lines.append(f"//   {rule} ({where[rule]}): {why}.")
    return "\n".join(lines) + "\n"


def count_waivers(text: str) -> dict[str, int]:
    """Lines of ``text`` inside a ``lint_off`` of each waived rule (and any other rule found)."""
    counts: dict[str, int] = {}
    off: set[str] = set()
    for ln in text.split("\n"):
        m = re.match(r"^\s*/\* verilator lint_(off|on) (\w+) \*/\s*$", ln)
        if m:
            (off.add if m.group(1) == "off" else off.discard)(m.group(2))
            continue
        for r in off:
            counts[r] = counts.get(r, 0) + 1
    return counts
