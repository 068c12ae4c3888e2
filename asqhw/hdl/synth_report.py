"""The synthesis report: result rows as Markdown, CSV and JSON, and ratios to a baseline design."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from asqhw.core.atomic import ensure_dir, write_text

from .synth_config import GROUPED_DESIGNS

__all__ = ["OUTPUT_NAMES", "COLUMNS", "compare_to_baseline", "format_markdown", "markdown_table",
           "write_outputs"]

#: Files written into the output directory.
OUTPUT_NAMES = ("synth.md", "synth.csv", "synth.json")

#: Columns of a result row (``docs/hardware.md``), in CSV order.
COLUMNS = ("label", "design", "b_w", "b_a", "lanes", "acc_bits", "pipeline", "target",
           "lut", "carry", "ff", "dsp", "cells", "io_bits", "fmax_mhz", "fmax_seeds", "seeds",
           "timeouts", "error")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list):
        return "/".join(_cell(v) for v in value) or "-"
    return str(value)


def _ratio(num, den) -> float | None:
    return round(num / den, 3) if num is not None and den else None


def compare_to_baseline(rows: list[dict], baseline: str = "uniform") -> list[dict]:
    """Each non-baseline row against the baseline design at the same b_w, b_a, lanes, pipeline, target.

    With ``baseline="uniform-grouped"`` only the other grouped designs are compared
    (the same schedule: the fair baseline of the grouped pot/post units).

    Returns
    -------
    list of dict
        ``label``, ``target``, ``lut_ratio``, ``cells_ratio`` and ``fmax_ratio`` (design /
        baseline; None where a value is missing), for rows whose baseline was measured.
    """
    key = ("b_w", "b_a", "lanes", "pipeline", "target")
    base = {tuple(r[k] for k in key): r for r in rows if r["design"] == baseline}
    out = []
    for r in rows:
        b = base.get(tuple(r[k] for k in key))
        if r["design"] == baseline or b is None:
            continue
        if baseline in GROUPED_DESIGNS and r["design"] not in GROUPED_DESIGNS:
            continue
        out.append({"label": r["label"], "target": r["target"],
                    "lut_ratio": _ratio(r["lut"], b["lut"]),
                    "cells_ratio": _ratio(r["cells"], b["cells"]),
                    "fmax_ratio": _ratio(r["fmax_mhz"], b["fmax_mhz"])})
    return out


def format_markdown(rows: list[dict]) -> str:
    """Markdown table of result rows (Fmax to 0.1 MHz, ``-`` where not applicable).

    When the rows include the ``uniform`` design, a second table gives every other
    design's LUT, cell and Fmax ratios to it (:func:`compare_to_baseline`); when they
    include ``uniform-grouped``, a third gives the grouped designs' ratios to it.
    """
    head = ("configuration", "target", "LUT", "carry", "FF", "DSP", "cells", "Fmax MHz (median)",
            "Fmax per seed", "timeouts")
    keys = ("label", "target", "lut", "carry", "ff", "dsp", "cells", "fmax_mhz", "fmax_seeds",
            "timeouts")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_cell(r[k]) for k in keys]
        if r["error"]:
            cells[-3] = "error"
        lines.append("| " + " | ".join(cells) + " |")
    errors = [f"- {r['label']} {r['target']}: {r['error']}" for r in rows if r["error"]]
    if errors:
        lines += [""] + errors
    for baseline in ("uniform", "uniform-grouped"):
        ratios = compare_to_baseline(rows, baseline)
        if not ratios:
            continue
        lines += ["", f"Relative to {baseline} (same b_w, b_a, lanes, pipeline, target; < 1 is "
                  "smaller for LUT and cells, > 1 is faster for Fmax):", "",
                  "| configuration | target | LUT ratio | cells ratio | Fmax ratio |",
                  "|---|---|---|---|---|"]
        for r in ratios:
            lines.append(f"| {r['label']} | {r['target']} | "
                         + " | ".join("-" if r[k] is None else f"{r[k]:.2f}"
                                      for k in ("lut_ratio", "cells_ratio", "fmax_ratio")) + " |")
    return "\n".join(lines) + "\n"


markdown_table = format_markdown


def write_outputs(out: Path, rows: list[dict], meta: dict, force: bool = True) -> None:
    """``synth.md``, ``synth.csv`` and ``synth.json`` (``meta`` plus the rows) in ``out``, each written atomically."""
    ensure_dir(out)
    write_text(out / "synth.md", format_markdown(rows), force=force)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow(["" if r[k] is None else
                         ";".join(str(v) for v in r[k])
                         if isinstance(r[k], list) else r[k] for k in COLUMNS])
    write_text(out / "synth.csv", buf.getvalue(), force=force)
    write_text(out / "synth.json", json.dumps({**meta, "rows": rows}, indent=1) + "\n", force=force)
