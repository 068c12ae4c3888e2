"""``asqhw train``: float pre-training then QAT of a reference network, written to a checkpoint."""

from __future__ import annotations

import os
import sys
import time
from asqhw.core import atomic
from asqhw.core.errors import UserError

__all__ = ["register", "cmd_train", "train_command", "epochs_arg"]


def epochs_arg(text: str) -> tuple[int, int]:
    """``--epochs N`` or ``FLOAT,QAT``: the float and QAT epoch counts (argparse type)."""
    import argparse

    parts = text.split(",")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or FLOAT,QAT epochs, not {text!r}") from None
    if len(vals) not in (1, 2) or min(vals) < 0:
        raise argparse.ArgumentTypeError(f"expected N or FLOAT,QAT non-negative epochs, not {text!r}")
    return (vals[0], vals[-1])


def default_out(model: str, scheme: str, bits: int) -> str:
    """Checkpoint name used when ``--out`` is not given."""
    return f"{model}_{scheme.replace('+', '_')}{bits}.pt"


#: recipe options of ``asqhw train``: (flag, Recipe field, type, help)
RECIPE_OPTIONS = (
    ("--lr", "qat_lr", float, "QAT learning rate (default: 0.04 CIFAR-10, 1e-3 digits)"),
    ("--float-lr", "float_lr", float, "float learning rate (default: 0.04 CIFAR-10, 3e-3 digits)"),
    ("--batch", "batch", int, "batch size (default: 128 CIFAR-10, 32 digits)"),
    ("--step-lr", "step_lr", float, "learning-rate factor of steps and scales (default: 1 SGD, 0.01 Adam)"),
    ("--adapter-lr", "adapter_lr", float, "learning-rate factor of the adapters (default 1)"),
    ("--warmup", "warmup", float, "fraction of the QAT steps with a linear warm-up (default 0)"),
    ("--bn-freeze", "bn_freeze", float, "fraction of the QAT steps with BatchNorm batch statistics, then frozen "
                                        "(default: 0.9 CIFAR-10; digits folds before QAT)"),
)


def recipe_from(args, data_spec: str):
    """The data set's recipe with the options the user gave."""
    import dataclasses

    from asqhw.golden.qat.train import recipe_for

    recipe = recipe_for(data_spec)
    changes = {field: getattr(args, flag[2:].replace("-", "_")) for flag, field, _, _ in RECIPE_OPTIONS}
    changes = {k: v for k, v in changes.items() if v is not None}
    if getattr(args, "adapter_start", None):
        changes["adapter_start"] = args.adapter_start
    for field in ("qat_lr", "float_lr", "step_lr", "adapter_lr"):
        if field in changes and not changes[field] > 0:
            raise UserError(f"learning rates must be positive, not {field} = {changes[field]}")
    if "batch" in changes and changes["batch"] < 1:
        raise UserError(f"--batch must be at least 1, not {changes['batch']}")
    for field in ("warmup", "bn_freeze"):
        if field in changes and not 0 <= changes[field] <= 1:
            raise UserError(f"--{field.replace('_', '-')} must be a fraction in [0, 1], not {changes[field]}")
    return dataclasses.replace(recipe, **changes)


def train_command(args, model: str, epochs: tuple[int, int], threads: int | None) -> str:
    """The ``asqhw train`` command line that reproduces a run, every setting spelt out."""
    parts = ["asqhw train", f"--data {args.data}", f"--model {model}", f"--scheme {args.scheme}",
             f"--bits {args.bits}", f"--e-max {args.e_max}", f"--reduction {args.reduction}",
             f"--epochs {epochs[0]},{epochs[1]}", f"--seed {args.seed}"]
    if threads is not None:
        parts.append(f"--threads {threads}")
    if args.subset is not None:
        parts.append(f"--subset {args.subset}")
    if args.init:
        parts.append(f"--init {args.init}")
    if getattr(args, "int_exact_epochs", None) is not None:
        parts.append(f"--int-exact-epochs {args.int_exact_epochs}")
    for flag, _, _, _ in RECIPE_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            parts.append(f"{flag} {value}")
    if getattr(args, "adapter_start", None):
        parts.append(f"--adapter-start {args.adapter_start}")
    if args.out:
        parts.append(f"--out {args.out}")
    return " ".join(parts)


def cmd_train(args) -> int:
    import torch

    from asqhw.golden.qat.checkpoint import load_checkpoint, save_checkpoint
    from asqhw.golden.qat.data import load_data
    from asqhw.golden.qat.scheme import Scheme
    from asqhw.golden.qat.train import default_model, train

    scheme = Scheme(args.scheme, args.bits, e_max=args.e_max, reduction=args.reduction)
    model = args.model or default_model(args.data if args.data == "digits" else "cifar10")
    out = atomic.check_target(args.out or default_out(model, args.scheme, args.bits), args.force, need_dir=True)
    threads = args.threads if args.threads is not None else (1 if args.data == "digits" else None)
    cores = max(os.cpu_count() or 1, 1)
    if threads is not None and not 1 <= threads <= cores:
        raise UserError(f"--threads must be in 1..{cores} (the cores here), not {threads}")
    if args.subset is not None and not 1 <= args.subset <= 1 << 31:
        raise UserError(f"--subset must be in 1..{1 << 31}, not {args.subset}")
    if not 0 <= args.seed < 1 << 32:
        raise UserError(f"--seed must be in 0..{(1 << 32) - 1}, not {args.seed}")
    if args.epochs and max(args.epochs) > 100000:
        raise UserError(f"--epochs must be at most 100000 each, not {args.epochs[0]},{args.epochs[1]}")
    if args.int_exact_epochs is None:
        from asqhw.golden.qat.intexact import default_epochs

        args.int_exact_epochs = 0 if args.epochs and args.epochs[1] == 0 else default_epochs(args.data)
    if args.int_exact_epochs < 0:
        raise UserError(f"--int-exact-epochs must be at least 0, not {args.int_exact_epochs}")
    data = load_data(args.data)
    recipe = recipe_from(args, data.spec)
    float_state = None
    if args.init:
        init = load_checkpoint(args.init)
        if init["model"] != model or init["data"] != data.spec:
            raise UserError(f"{args.init} holds {init['model']} on {init['data']}, not {model} on {data.spec}")
        float_state = init["float_state"]
    fe, qe = args.epochs if args.epochs else (None, None)
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    t0 = time.perf_counter()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        used = torch.get_num_threads()
        ckpt = train(data, scheme, model=model, float_epochs=fe, qat_epochs=qe, seed=args.seed,
                     subset=args.subset, float_state=float_state, progress=not args.quiet, recipe=recipe,
                     int_exact_epochs=args.int_exact_epochs)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
    secs = time.perf_counter() - t0
    ckpt["command"] = train_command(args, model, tuple(ckpt["epochs"]), threads)
    save_checkpoint(out, ckpt, force=args.force)
    fe, qe = ckpt["epochs"]
    print(f"{model} on {data.spec}, scheme {scheme.name} {scheme.bits}-bit"
          f"{'' if scheme.weight_format == 'uniform' else f' (E_max {scheme.e_max_value})'}, seed {args.seed}")
    print(f"float accuracy {ckpt['float_acc']:.2f}% ({fe} epochs{', from ' + str(args.init) if args.init else ''})")
    ie = ckpt.get("int_exact_epochs", 0)
    print(f"QAT accuracy   {ckpt['qat_acc']:.2f}% ({qe} epochs" + (f", then {ie} integer-exact: the integer network's; "
          f"{ckpt['fake_quant_acc']:.2f}% fake-quantised before them)" if ie else ")"))
    if scheme.adapter:
        from asqhw.golden.qat.betastats import beta_spread
        from asqhw.golden.qat.checkpoint import net_from_checkpoint

        rows = beta_spread(net_from_checkpoint(ckpt), data.x_test[:1000])
        print(f"beta p5-p95 over {min(len(data.y_test), 1000)} test images: "
              + ", ".join(f"{r['node']} {r['p5']:.3f}-{r['p95']:.3f}" for r in rows))
    n_train = min(args.subset or len(data.y_train), len(data.y_train))
    print(f"train samples {n_train}, test samples {len(data.y_test)}, "
          f"{secs:.1f} s, {used} thread{'s' if used > 1 else ''}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def register(sub) -> None:
    """Add the ``train`` subcommand to the CLI's subparsers."""
    from asqhw.golden.qat.adapter import ADAPTER_STARTS
    from asqhw.golden.qat.scheme import E_MAX_CHOICES, SCHEMES

    p = sub.add_parser("train", help="train a reference network (float, then QAT) into a checkpoint")
    p.add_argument("--data", default="digits", help="'digits' (bundled, default) or 'cifar10:DIR'")
    p.add_argument("--model", choices=["digits_cnn", "resnet20"], default=None,
                   help="network (default: digits_cnn for digits, resnet20 for CIFAR-10)")
    p.add_argument("--scheme", choices=list(SCHEMES), default="asq+post")
    p.add_argument("--bits", type=int, default=4, help="activation and weight bits of the inner layers")
    p.add_argument("--e-max", choices=list(E_MAX_CHOICES), default="default",
                   help="POT/POST E_max: 2^(b-1)-2 (default, b storage bits) or eq17: 2^(b-1)-1")
    p.add_argument("--reduction", type=int, default=4, help="adapter reduction r (hidden width C//r)")
    p.add_argument("--epochs", type=epochs_arg, default=None, metavar="N|FLOAT,QAT",
                   help="epochs of float pre-training and of QAT (default: 30,30 digits; 200,300 CIFAR-10)")
    p.add_argument("--init", metavar="CHECKPOINT", help="skip float training: take the float network of this checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 for digits, where more threads only add overhead; "
                        "else torch's choice); results are reproducible for a fixed thread count")
    p.add_argument("--subset", type=int, default=None, help="train on the first N training samples only")
    p.add_argument("--int-exact-epochs", type=int, default=None, metavar="N",
                   help="final QAT epochs whose forward pass is the integer network, bit for bit (QAT accuracy = "
                        "integer accuracy; default 3 digits, 1 CIFAR-10, none without QAT epochs; 0: none)")
    for flag, _, kind, text in RECIPE_OPTIONS:
        p.add_argument(flag, type=kind, default=None, help=text)
    p.add_argument("--adapter-start", choices=list(ADAPTER_STARTS), default=None,
                   help="adapter start: fit (CIFAR-10 default; beta follows each image's activation scale), range, "
                        "lsq (the authors', digits default)")
    p.add_argument("--out", metavar="CHECKPOINT", help="checkpoint file (default: MODEL_SCHEMEBITS.pt)")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)
