"""``asqhw results``: the fidelity table of docs/results.md, trained, exported and measured in one run.

For every scheme and bit width: QAT (seeded) from one shared float network, the export
(docs/network.md), the bit-exactness of its golden samples (numba model against the PyTorch
integer reference), then the whole test split through the QAT network (PyTorch, float64,
eval mode) and through the integer network (numba model). A row gives the float, QAT and
integer accuracy and the integer-vs-QAT top-1 agreement, and whether it meets the targets
of issue 6 (agreement >= 99.5 %, integer within 0.5 points of QAT).
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from asqhw.core.errors import UserError

__all__ = ["register", "cmd_results", "measure", "markdown", "ORDER", "AGREE_TARGET", "GAP_TARGET"]

#: the row order of the table (the issue's order)
ORDER = ("lsq", "asq", "lsq+pot", "lsq+post", "asq+pot", "asq+post")
AGREE_TARGET = 99.5     # percent of test images
GAP_TARGET = 0.5        # percentage points, |integer - QAT|
LABELS = {"lsq": "LSQ", "asq": "ASQ", "lsq+pot": "LSQ+POT", "lsq+post": "LSQ+POST", "asq+pot": "ASQ+POT",
          "asq+post": "ASQ+POST"}


def _list(text: str, kind, what: str) -> list:
    import argparse

    try:
        vals = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, not {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError(f"expected at least one of the {what}")
    return vals


def register(sub) -> None:
    """Add the ``results`` subcommand to the argparse subparsers ``sub``."""
    from .train_cmd import epochs_arg

    p = sub.add_parser("results", help="train, export and measure every scheme and bit width (docs/results.md)")
    p.add_argument("--data", default="digits", help="'digits' (bundled, default) or 'cifar10:DIR'")
    p.add_argument("--schemes", type=lambda t: _list(t, str, "schemes"), default=list(ORDER),
                   help=f"comma-separated schemes (default: {','.join(ORDER)})")
    p.add_argument("--bits", type=lambda t: _list(t, int, "bit widths"), default=[2, 3, 4],
                   help="comma-separated bit widths of the inner layers (default 2,3,4)")
    p.add_argument("--epochs", type=epochs_arg, default=None, metavar="N|FLOAT,QAT",
                   help="epochs of the float network and of each QAT run (default: the data set's recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, default=None, help="train on the first N training samples only")
    p.add_argument("--limit", type=int, default=None, help="measure on the first N test images only")
    p.add_argument("--samples", type=int, default=8, help="golden samples per export (bit-exactness check)")
    p.add_argument("--int-exact-epochs", type=int, default=0, metavar="N",
                   help="last N QAT epochs of every row in integer-exact mode; QAT %% is then that mode's "
                        "accuracy on the integer run's codes (default 0: fake quantisation throughout)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: 1 for digits, else torch's choice)")
    p.add_argument("--work", metavar="DIR", help="keep the checkpoints and exports in DIR (default: a temporary "
                                                  "directory, removed at the end)")
    p.add_argument("--out", metavar="FILE.md", help="write the table as markdown (docs/results.md)")
    p.add_argument("--force", action="store_true", help="overwrite --out and files in --work")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_results)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def _command(args) -> str:
    """The command line that reproduces a table, every setting spelt out."""
    parts = ["asqhw results", f"--data {args.data}", f"--schemes {','.join(args.schemes)}",
             f"--bits {','.join(map(str, args.bits))}", f"--seed {args.seed}", f"--samples {args.samples}"]
    if args.epochs:
        parts.append(f"--epochs {args.epochs[0]},{args.epochs[1]}")
    if args.int_exact_epochs:
        parts.append(f"--int-exact-epochs {args.int_exact_epochs}")
    for opt in ("subset", "limit", "threads"):
        if getattr(args, opt) is not None:
            parts.append(f"--{opt} {getattr(args, opt)}")
    if args.out:
        parts.append(f"--out {args.out}")
    return " ".join(parts)


def _commit() -> str | None:
    """The git commit of the source tree, when it is a clean git checkout (else None)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode or dirty.returncode:
        return None
    return head.stdout.strip() + (" (with local changes)" if dirty.stdout.strip() else "")


def _qat_predictions(net, x, batch: int = 500) -> np.ndarray:
    import torch

    preds = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            preds.append(net(x[i:i + batch].double()).argmax(1).numpy())
    return np.concatenate(preds).astype(np.int64)


def _int_predictions(net, codes, batch: int = 256) -> np.ndarray:
    from asqhw.sim.network import IntNetwork

    model = IntNetwork(net)
    key = f"vec/{net.output}"
    preds = [np.argmax(model.run(codes[i:i + batch], keep=False)[key], axis=1) for i in range(0, len(codes), batch)]
    return np.concatenate(preds).astype(np.int64)


def measure(args) -> dict:
    """Train, export and measure every row of ``args``; return the table as a dict.

    ``args`` carries the options of the ``results`` subcommand. The float network is trained
    once (seed ``args.seed``) and every QAT run starts from it.
    """
    import torch

    from asqhw.golden.netexport import build_network
    from asqhw.golden.qat.checkpoint import net_from_checkpoint, save_checkpoint
    from asqhw.golden.qat.data import load_data
    from asqhw.golden.qat.scheme import SCHEMES, Scheme
    from asqhw.golden.qat.train import default_model, evaluate, train

    from asqhw.core.datasets import input_codes, load_test_set
    from .netconform import check_network
    from asqhw.core.network import read_network, write_network

    for s in args.schemes:
        if s not in SCHEMES:
            raise UserError(f"scheme must be one of {', '.join(SCHEMES)}, not {s!r}")
    schemes = [Scheme(s, b) for s in args.schemes for b in args.bits]   # checks the bit widths too
    if len(set(schemes)) != len(schemes):
        raise UserError("--schemes and --bits name a row twice")
    for opt in ("subset", "limit"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise UserError(f"--{opt} must be at least 1, not {v}")
    if args.samples < 1:
        raise UserError(f"--samples must be at least 1, not {args.samples}")
    if args.int_exact_epochs < 0:
        raise UserError(f"--int-exact-epochs must be at least 0, not {args.int_exact_epochs}")
    if args.out:
        from asqhw.core.atomic import check_target

        check_target(args.out, args.force, need_dir=True)
    threads = args.threads if args.threads is not None else (1 if args.data == "digits" else None)
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, not {threads}")
    torch_threads = threads or torch.get_num_threads()
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(torch_threads)
    torch.use_deterministic_algorithms(True)

    data = load_data(args.data)
    images, labels, what = load_test_set(args.data)
    if args.limit is not None:
        images, labels = images[:args.limit], labels[:args.limit]
    x_test = data.x_test[:len(labels)]
    if not np.array_equal(data.y_test[:len(labels)].numpy(), labels):
        raise UserError(f"{args.data}: the training and the run test splits differ")
    model = default_model(data.spec)
    fe, qe = args.epochs if args.epochs else (None, None)
    samples = min(args.samples, len(data.y_test))

    work_tmp = None
    if args.work:
        work = Path(args.work)
        if work.exists() and not work.is_dir():
            raise UserError(f"--work {work} is not a directory")
        work.mkdir(parents=True, exist_ok=True)
        for sch in schemes:
            name = f"{model}_{sch.name.replace('+', '_')}{sch.bits}"
            for f in (work / f"{name}.pt", work / f"{name}.npz"):
                if f.exists() and not args.force:
                    raise UserError(f"{f} exists; pass --force to overwrite it")
    else:
        work_tmp = tempfile.TemporaryDirectory(prefix="asqhw-results-")
        work = Path(work_tmp.name)
    t_all = time.perf_counter()
    commit = _commit()
    try:
        t0 = time.perf_counter()
        _say(args.quiet, f"[float] {model} on {data.spec}, seed {args.seed} ...")
        base = train(data, schemes[0], model=model, float_epochs=fe, qat_epochs=0, seed=args.seed,
                     subset=args.subset, progress=False, samples=samples)
        float_state = base["float_state"]
        float_net = net_from_checkpoint(base, "float")
        float_acc = evaluate(float_net, x_test, torch.from_numpy(labels))
        _say(args.quiet, f"[float] accuracy {float_acc:.2f}% ({base['epochs'][0]} epochs, "
                         f"{time.perf_counter() - t0:.0f} s)")
        rows = []
        for i, sch in enumerate(schemes, 1):
            t0 = time.perf_counter()
            tag = f"{sch.name} {sch.bits}-bit"
            _say(args.quiet, f"[{i}/{len(schemes)}] {tag}: QAT ...")
            ckpt = train(data, sch, model=model, qat_epochs=qe, seed=args.seed, subset=args.subset,
                         float_state=float_state, progress=False, samples=samples,
                         int_exact_epochs=args.int_exact_epochs)
            name = f"{model}_{sch.name.replace('+', '_')}{sch.bits}"
            ckpt_path, net_path = work / f"{name}.pt", work / f"{name}.npz"
            save_checkpoint(ckpt_path, ckpt, force=True)
            manifest, params, vectors = build_network(ckpt, samples=samples, name=name,
                                                      meta={"results_command": _command(args)})
            write_network(net_path, manifest, params, vectors)
            net = read_network(net_path)
            qat_pred = _qat_predictions(net_from_checkpoint(ckpt, "qat").double(), x_test)
            codes = input_codes(images, net.manifest["input"])
            fake_pred = None
            if args.int_exact_epochs:  # QAT in integer-exact mode on the codes the integer run reads
                from asqhw.golden.qat.intexact import predict_codes

                fake_pred, qat_pred = qat_pred, predict_codes(net_from_checkpoint(ckpt, "qat"), codes).numpy()
            rep = check_network(net)
            int_pred = _int_predictions(net, codes)
            # numba's OpenMP pool shares torch's libgomp and leaves it at numba's thread count:
            # without this the next QAT runs with a second, spinning thread, many times slower
            # and with another reduction order
            torch.set_num_threads(torch_threads)
            n = len(labels)
            row = {"scheme": sch.name, "bits": sch.bits, "float_acc": float_acc,
                   "qat_acc": 100.0 * float(np.mean(qat_pred == labels)),
                   "int_acc": 100.0 * float(np.mean(int_pred == labels)),
                   "agreement": 100.0 * float(np.mean(int_pred == qat_pred)),
                   "disagree": int(np.count_nonzero(int_pred != qat_pred)), "images": n,
                   "golden_vectors": rep.vectors, "golden_mismatches": rep.mismatches,
                   "seconds": round(time.perf_counter() - t0, 1)}
            if fake_pred is not None:
                row |= {"int_exact_epochs": args.int_exact_epochs, "fake_quant_acc": 100.0 * float(np.mean(fake_pred == labels)),
                        "fake_quant_acc_before": ckpt["fake_quant_acc"], "int_acc_before": ckpt["int_exact_start_acc"]}
            row["gap"] = row["int_acc"] - row["qat_acc"]
            row["meets"] = bool(row["agreement"] >= AGREE_TARGET and abs(row["gap"]) <= GAP_TARGET
                                and rep.mismatches == 0)
            rows.append(row)
            _say(args.quiet, f"[{i}/{len(schemes)}] {tag}: QAT {row['qat_acc']:.2f}%, integer {row['int_acc']:.2f}%, "
                             f"agreement {row['agreement']:.2f}% ({row['disagree']} of {n} differ), "
                             f"{rep.mismatches} golden mismatches, {row['seconds']:.0f} s")
    finally:
        if work_tmp is not None:
            work_tmp.cleanup()
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
    return {"command": _command(args), "data": data.spec, "test_set": what, "model": model,
            "epochs": [base["epochs"][0], ckpt["epochs"][1]], "int_exact_epochs": args.int_exact_epochs,
            "seed": args.seed, "subset": args.subset, "threads": torch_threads,
            "seconds": round(time.perf_counter() - t_all, 1), "rows": rows,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
            "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
                       f"torch {torch.__version__}"}


def _verdict(r: dict) -> str:
    misses = []
    if r["golden_mismatches"]:
        misses.append(f"{r['golden_mismatches']} golden mismatches")
    if r["agreement"] < AGREE_TARGET:
        misses.append(f"agreement < {AGREE_TARGET}%")
    if abs(r["gap"]) > GAP_TARGET:
        misses.append(f"abs(int - QAT) > {GAP_TARGET}")
    return "yes" if not misses else "MISS: " + ", ".join(misses)


def table(res: dict) -> str:
    """The result rows as a markdown table."""
    exact = bool(res.get("int_exact_epochs"))
    head = ["scheme", "bits", "float %"] + (["fake-quant % before", "integer % before"] if exact else []) + [
        "QAT %", "integer %", "int - QAT", "agreement %", "differ", "golden vectors (mismatches)", "targets met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|"]
    for r in res["rows"]:
        before = [f"{r['fake_quant_acc_before']:.2f}", f"{r['int_acc_before']:.2f}"] if exact else []
        lines.append("| " + " | ".join([
            LABELS.get(r["scheme"], r["scheme"]), str(r["bits"]), f"{r['float_acc']:.2f}"] + before + [f"{r['qat_acc']:.2f}",
            f"{r['int_acc']:.2f}", f"{r['gap']:+.2f}", f"{r['agreement']:.2f}", f"{r['disagree']}/{r['images']}",
            f"{r['golden_vectors']} ({r['golden_mismatches']})", _verdict(r)]) + " |")
    return "\n".join(lines)


CIFAR_SECTION = """\
## ResNet-20 on CIFAR-10

The same command produces the table for the CIFAR-style ResNet-20 (`asqhw/golden/qat/resnet.py`)
from a directory holding CIFAR-10:

```
asqhw results --data cifar10:DIR --work runs-cifar10 --out results-cifar10.md
```

`DIR` is the python version of CIFAR-10 as distributed (`cifar-10-python.tar.gz` unpacked,
usually `cifar-10-batches-py/`): the pickle files `data_batch_1` ... `data_batch_5` (the
50,000 training images) and `test_batch` (the 10,000 test images), each a dict with `data`
(uint8, N x 3072, the red, green and blue 32 x 32 planes of each image) and `labels` (0..9).
Other files (`batches.meta`, `readme.html`) are ignored. A missing or malformed file ends
in one line naming it. `--work` keeps every checkpoint and export (the run is long: keep them).

The recipe is the paper's (docs/qat.md): SGD with momentum 0.9, learning rate 0.04, batch 128,
weight decay 1e-4, cosine decay, random crops and flips, first conv and last FC at 8 bits, the
BatchNorm simulated-folded during QAT (batch statistics, frozen for the last 10 % of the
steps) and folded for the export; 200 float epochs once, then 300 QAT epochs for each of the 18 rows
(`--epochs FLOAT,QAT` changes both). Training runs on the CPU (torch threads: `--threads`,
default all cores). Measured here with 2 threads, one step of 128 images costs 2.1 s of CPU
time in float and 7.2 s in QAT (`asq+post`, 4-bit), that is about 7 minutes per float epoch
and 24 minutes per QAT epoch of 391 steps on an idle 2-core machine: about 23 hours for the
float network and 5 days for each row's 300 QAT epochs. A shorter table that still compares
the schemes, `--schemes lsq,asq,asq+post --bits 4 --epochs 200,15`, takes about 41 hours
there; a many-core server divides these times by roughly its number of cores. Measuring a row
(integer network over the 10,000 test images in the numba model, QAT network in PyTorch) adds a few
minutes. The paper's Table 4 anchors for this network are FP 92.6 %, LSQ 91.0/92.0/92.4 %,
ASQ 91.2/91.7/92.8 % at 2/3/4 bits and ASQ+POST 92.3/93.0 % at 3/4 bits.
"""


def markdown(res: dict) -> str:
    """docs/results.md: what was measured, the command, the table and the misses."""
    rows = res["rows"]
    missed = [r for r in rows if not r["meets"]]
    ep = res["epochs"]
    subset = "" if res["subset"] is None else f", first {res['subset']} training samples"
    out = [
        "# Results: QAT against the integer network",
        "",
        f"Measured {res['date']} on {res['machine']}, {res['threads'] or 'default'} torch thread(s), "
        f"numba model on all cores; {res['seconds'] / 60:.1f} minutes in all"
        f"{'' if not res.get('commit') else ', source at commit ' + res['commit']}. Reproduce with",
        "",
        "```",
        res["command"],
        "```",
        "",
        f"{res['model']} on {res['data']}: one float network ({ep[0]} epochs, seed {res['seed']}{subset}), "
        f"then for each "
        f"row {ep[1]} epochs of QAT from it (`asqhw/golden/qat`), the export with "
        "`golden.netexport` (docs/network.md) and:",
        "",
        f"- **float %**: the float network (BatchNorm, no quantisation) on the {res['test_set']} "
        f"({rows[0]['images']} images);",
        ("- **QAT %**: the QAT network in PyTorch (fake quantisation, the quantised adapter, float64, "
         "eval mode) on the same images;") if not res.get("int_exact_epochs") else
        (f"- **QAT %**: the QAT network in integer-exact mode (`golden.qat.intexact`, docs/qat.md), its last "
         f"{res['int_exact_epochs']} QAT epochs trained in that mode, on the input codes of the integer run; "
         "**fake-quant % before**, **integer % before**: the fake-quantised QAT network and its integer "
         "network (golden reference, codes of the normalised images) before those epochs, over the whole test split;"),
        "- **integer %**: the exported integer network in the numba model (`sim.network`, "
        "`asqhw run`) on the same images, input codes made as `asqhw run` makes them;",
        "- **agreement %**: images whose integer top-1 class equals the QAT network's; **differ**: "
        "the images where they differ;",
        "- **golden vectors (mismatches)**: integer values of the export's golden samples "
        "(every accumulator, output, adapter S/P/H/beta and logit) that the numba model "
        "recomputes, and how many differ from the PyTorch integer reference (`asqhw conform`);",
        f"- **targets met**: agreement >= {AGREE_TARGET} %, integer within {GAP_TARGET} points of "
        "QAT, zero golden mismatches (issue 6).",
        "",
        table(res),
        "",
    ]
    if missed:
        out += [f"{len(missed)} of {len(rows)} rows miss a target: "
                + "; ".join(f"{LABELS.get(r['scheme'], r['scheme'])} {r['bits']}-bit ({_verdict(r)[6:]}: "
                            f"agreement {r['agreement']:.2f} %, int - QAT {r['gap']:+.2f})" for r in missed) + ".", ""]
    else:
        out += ["Every row meets the targets.", ""]
    n = rows[0]["images"]
    lo, hi = min(r["qat_acc"] for r in rows), max(r["qat_acc"] for r in rows)
    out += [f"On {n} test images one image is {100 / n:.2f} points of accuracy and of agreement, so "
            f"the agreement target allows {int(n * (100 - AGREE_TARGET) / 100)} differing image(s) per row. "
            f"The QAT accuracies of the rows span {lo:.2f} to {hi:.2f} % ({round((hi - lo) * n / 100)} images): "
            "with one seed and a test split this small, differences of a few images between schemes or bit "
            "widths are not evidence that one is better; the table measures how faithfully the integer "
            "network reproduces each QAT network, which is what it is for.", "",
            "The bundled network (`asqhw/golden/networks/`, docs/network.md) is trained by `asqhw train`, which "
            "trains its own float network for its scheme, so it is not the ASQ+POST 4-bit row of this "
            "table. The checkpoints and exports of every row stay in `--work DIR` when it is given; "
            "`asqhw plot` draws figures from them (docs/figures.md).", ""]
    out.append(CIFAR_SECTION)
    return "\n".join(out)


#: headings of hand-measured sections that a rewrite of ``--out`` carries over unchanged
KEPT_HEADINGS = ("## ResNet-20 on the CIFAR-format stand-in",)


def kept_sections(path) -> str:
    """The hand-measured sections (:data:`KEPT_HEADINGS`, each up to the next ``## ``) of an existing ``path``."""
    from pathlib import Path

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    kept = []
    for head in KEPT_HEADINGS:
        at = text.find("\n" + head + "\n")
        if at < 0:
            continue
        end = text.find("\n## ", at + 1)
        kept.append(text[at:end if end >= 0 else len(text)].rstrip("\n"))
    return "".join("\n" + k for k in kept)


def cmd_results(args) -> int:
    """Measure the rows, print the table (or JSON), write ``--out``."""
    res = measure(args)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(table(res))
    if args.out:
        from asqhw.core.atomic import write_text

        write_text(args.out, markdown(res) + kept_sections(args.out) + "\n", force=args.force)
        _say(args.quiet, f"wrote {args.out}")
    return 0 if all(r["golden_mismatches"] == 0 for r in res["rows"]) else 1

