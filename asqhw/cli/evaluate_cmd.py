"""``asqhw evaluate``: a QAT checkpoint's accuracy in float, fake-quantised and integer-exact mode.

The integer-exact mode (``golden.qat.intexact``, docs/qat.md) is the integer network of the
checkpoint's parameters, bit for bit; it reads the input codes that ``asqhw run`` makes from the
test images, so its top-1 is what ``asqhw run`` gets from the export. Beside it: the float
network, the fake-quantised QAT network (float64, eval mode) and how often that one's top-1
equals the integer network's.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from asqhw.core.errors import UserError

__all__ = ["register", "cmd_evaluate", "evaluate_checkpoint"]

BATCH = 250


def register(sub) -> None:
    """Add the ``evaluate`` subcommand to the argparse subparsers ``sub``."""
    p = sub.add_parser("evaluate", help="accuracy of a QAT checkpoint: float, fake-quantised, integer-exact")
    p.add_argument("--model", required=True, metavar="CHECKPOINT", help="checkpoint written by asqhw train")
    p.add_argument("--data", default=None, metavar="SPEC", help="test data (default: the checkpoint's)")
    p.add_argument("--arch", choices=["split", "lut"], default="split", help="POST architecture, as at export")
    p.add_argument("--limit", type=int, default=None, help="the first N test images only")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", action="store_true", help="print a JSON record instead of the table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_evaluate)


def evaluate_checkpoint(ckpt: dict, images: np.ndarray, labels: np.ndarray, *, arch: str = "split",
                        progress=None) -> dict:
    """Float, fake-quant and integer-exact top-1 of a checkpoint on raw images in ``[0, 1]``.

    Returns a dict of accuracies (percent), the fake-vs-integer agreement (percent) and the
    number of differing images. ``progress(done, total)`` is called after every batch.
    """
    import torch

    from asqhw.core.datasets import input_codes
    from asqhw.golden.qat.checkpoint import net_from_checkpoint
    from asqhw.golden.qat.intexact import build_graph, predict_codes

    float_net = net_from_checkpoint(ckpt, "float").double()
    qat_net = net_from_checkpoint(ckpt, "qat").double()
    inp = {"shape": list(qat_net.input_shape), "mean": list(ckpt["mean"]), "std": list(ckpt["std"]),
           "step": build_graph(qat_net, arch).input_step}
    mean = np.asarray(ckpt["mean"], np.float64).reshape(1, -1, 1, 1)
    std = np.asarray(ckpt["std"], np.float64).reshape(1, -1, 1, 1)
    codes = input_codes(images, inp)   # checks the shape
    preds = {"float": [], "fake_quant": [], "int_exact": []}
    n = len(labels)
    for i in range(0, n, BATCH):
        x = torch.from_numpy((images[i:i + BATCH] - mean) / std)
        with torch.no_grad():
            preds["float"].append(float_net(x).argmax(1).numpy())
            preds["fake_quant"].append(qat_net(x).argmax(1).numpy())
        preds["int_exact"].append(predict_codes(qat_net, codes[i:i + BATCH], arch=arch).numpy())
        if progress:
            progress(min(i + BATCH, n), n)
    p = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in preds.items()}
    acc = {k: 100.0 * float(np.mean(v == labels)) if n else 0.0 for k, v in p.items()}
    differ = int(np.count_nonzero(p["fake_quant"] != p["int_exact"]))
    return {"images": n, "float_acc": acc["float"], "fake_quant_acc": acc["fake_quant"],
            "int_exact_acc": acc["int_exact"], "fake_vs_int_agreement": 100.0 * (1 - differ / n) if n else 100.0,
            "fake_vs_int_differ": differ}


def cmd_evaluate(args) -> int:
    import torch

    from asqhw.core.datasets import load_test_set
    from asqhw.golden.qat.checkpoint import load_checkpoint

    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, not {args.threads}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, not {args.limit}")
    ckpt = load_checkpoint(args.model)
    if ckpt.get("qat_state") is None:
        raise UserError(f"{args.model}: the checkpoint holds no QAT network (float training only)")
    data = args.data or ckpt["data"]
    images, labels, what = load_test_set(data)
    if args.limit is not None:
        images, labels = images[:args.limit], labels[:args.limit]

    def show(done, total):
        if not args.quiet:
            print(f"[{done}/{total}] images", file=sys.stderr, flush=True)

    old = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        rec = evaluate_checkpoint(ckpt, images, labels, arch=args.arch, progress=show)
    finally:
        torch.set_num_threads(old)
    rec |= {"model": str(args.model), "data": data, "test_set": what, "arch": args.arch,
            "int_exact_epochs": ckpt.get("int_exact_epochs", 0), "seconds": round(time.perf_counter() - t0, 1)}
    if args.json:
        print(json.dumps(rec, indent=1))
        return 0
    print(f"{args.model} on the {what} ({rec['images']} images), POST arch {args.arch}, "
          f"{rec['int_exact_epochs']} integer-exact epochs in training")
    print(f"float accuracy          {rec['float_acc']:.2f}%")
    print(f"fake-quant QAT accuracy {rec['fake_quant_acc']:.2f}%")
    print(f"integer-exact accuracy  {rec['int_exact_acc']:.2f}%  (the integer network: what asqhw run measures)")
    print(f"fake-quant vs integer   {rec['fake_vs_int_agreement']:.2f}% agreement "
          f"({rec['fake_vs_int_differ']} of {rec['images']} differ), {rec['seconds']:.1f} s")
    return 0
