"""``asqhw run``: a network export over a data set in the numba integer model.

Reports the integer network's accuracy, the QAT network's accuracy on the same test split when
the export's ``meta`` records it (``qat_acc``, percent, with ``data`` naming the data set), the
top-1 agreement with the QAT network over the export's golden samples (their
``vec/qat_logits``; the export holds no float network to compare over the whole data set) and
images/s.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np

from asqhw.core.errors import UserError
from asqhw.core.validate import is_int

__all__ = ["register", "cmd_run", "MAX_BATCH", "BATCH_BYTES"]

MAX_BATCH = 1 << 16
#: Working memory one model call may take: the batch is cut so that every tensor of it,
#: counted at 32 bytes a value (int64 accumulators of two-accumulator layers, and copies),
#: stays within this.
BATCH_BYTES = 1 << 30


def _percent(v):
    """A percentage from an export's free-form meta: a finite number in 0..100, else None."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 100
    return v if ok else None


def register(sub) -> None:
    """Add the ``run`` subcommand to the argparse subparsers ``sub``."""
    p = sub.add_parser("run", help="run a network export in integers over a data set")
    p.add_argument("--model", required=True, metavar="EXPORT", help="network export (.npz, docs/network.md)")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="'digits' (scikit-learn's, the test split) or 'cifar10:DIR' (test_batch); "
                        "default: the export's meta.data, else digits")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N test images")
    p.add_argument("--batch", type=int, default=256, help="images per model call (default 256)")
    p.add_argument("--method", choices=["auto", "exact", "gemm", "int"], default="auto",
                   help="layer path of the numba model (all exact; default auto)")
    p.add_argument("--threads", type=int, default=None,
                   help="numba and OpenBLAS threads (default: all cores; 1 is faster on a busy machine)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    """Run the export over the data set; print accuracy, QAT agreement, images/s."""
    import numba

    from asqhw.sim.network import IntNetwork, set_threads

    from asqhw.core.datasets import input_codes, load_test_set
    from asqhw.core.network import peak_values, read_network

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be a positive integer, not {args.limit}")
    if not 1 <= args.batch <= MAX_BATCH:
        raise UserError(f"--batch must be in 1..{MAX_BATCH}, not {args.batch}")
    if args.threads is not None:
        try:
            set_threads(args.threads)
        except UserError as e:
            raise UserError(f"--{e}") from None
    net = read_network(args.model)
    meta = net.manifest.get("meta") if isinstance(net.manifest.get("meta"), dict) else {}
    trained_on = meta.get("data") if isinstance(meta.get("data"), str) and meta["data"].isprintable() else None
    if args.data is None:
        args.data = trained_on if trained_on == "digits" or str(trained_on).startswith("cifar10:") else "digits"
    images, labels, what = load_test_set(args.data)
    if args.limit is not None:
        images, labels = images[:args.limit], labels[:args.limit]
    codes = input_codes(images, net.manifest["input"])
    if codes.shape[0] == 0:
        raise UserError(f"the data set {args.data!r} has no test images")
    batch = max(1, min(args.batch, BATCH_BYTES // (32 * peak_values(net.manifest, net.tensors))))
    model = IntNetwork(net, args.method)
    model.run(codes[:1], keep=False)                       # compile (or load) the kernels first
    key = f"vec/{net.output}"
    preds = []
    t0 = time.perf_counter()
    for i in range(0, codes.shape[0], batch):
        logits = model.run(codes[i:i + batch], keep=False)[key]
        preds.append(np.argmax(logits, axis=1))
    seconds = time.perf_counter() - t0
    pred = np.concatenate(preds)
    n = int(pred.size)
    correct = int(np.count_nonzero(pred == labels))
    agree, agree_n, agree_what = None, 0, ""
    top1 = meta.get("qat_top1")
    if (isinstance(top1, list) and trained_on == args.data and len(top1) >= n
            and all(is_int(v) and 0 <= v < net.manifest["classes"]
                    for v in top1)):
        agree_n, agree_what = n, "test images (meta.qat_top1)"
        agree = float(np.mean(pred == np.asarray(top1[:n], dtype=np.int64)))
    elif net.samples:
        golden = np.argmax(model.run(net.vectors["vec/input"], keep=False)[key], axis=1)
        agree_n = net.samples
        agree = float(np.mean(golden == np.argmax(net.vectors["vec/qat_logits"], axis=1)))
        agree_what = "golden samples (vec/qat_logits)"
    # the QAT network's accuracy on the same full test split, if the exporter recorded it (percent)
    qat_acc = _percent(meta.get("qat_acc"))
    if not (qat_acc is not None and trained_on == args.data and args.limit is None):
        qat_acc = None
    rec = {"model": net.name, "path": str(args.model), "data": args.data, "images": n,
           "correct": correct, "accuracy": round(correct / n, 6),
           "qat_accuracy": None if qat_acc is None else round(qat_acc / 100, 6),
           "qat_agreement": None if agree is None else round(agree, 6), "qat_agreement_samples": agree_n,
           "qat_agreement_over": agree_what,
           "images_per_second": round(n / seconds, 1) if seconds > 0 else None,
           "seconds": round(seconds, 4), "batch": batch, "method": args.method,
           "threads": numba.get_num_threads()}
    if args.json:
        print(json.dumps(rec, indent=1))
        return 0
    print(f"model {net.name} ({args.model}) on the {what}, {n} images")
    print(f"integer accuracy        {100 * correct / n:.2f}% ({correct}/{n})")
    if qat_acc is not None:
        print(f"QAT accuracy            {qat_acc:.2f}% (the export's meta; integer - QAT = "
              f"{100 * correct / n - qat_acc:+.2f} points)")
    if agree is None:
        print("QAT top-1 agreement     - (the export has no golden samples with QAT logits)")
    else:
        print(f"QAT top-1 agreement     {100 * agree:.2f}% of the {agree_n} {agree_what}")
    print(f"speed                   {rec['images_per_second']} images/s "
          f"(numba integer model, batch {batch}, {rec['threads']} threads, {seconds:.3f} s)")
    return 0
