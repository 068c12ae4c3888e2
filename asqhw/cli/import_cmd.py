"""``asqhw import``: bring your own float network (ONNX, or the authors' ResNet-18), then QAT on your data.

The model becomes the QAT graph with its float weights (docs/import.md):
``golden.qat.onnx_import`` for an ONNX file, ``golden.qat.authors`` for a PyTorch state dict in
the layout of the authors' code. Then the project's recipe runs (``golden.qat.imported``:
optional float fine-tuning, then QAT) and the checkpoint is written; ``asqhw golden export
--model CKPT`` makes the integer network from it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from asqhw.core import atomic
from asqhw.core.errors import UserError

__all__ = ["register", "cmd_import", "model_kind"]


def _epochs(text: str) -> tuple[int, int]:
    import argparse

    try:
        vals = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected QAT or FLOAT,QAT epochs, not {text!r}") from None
    if len(vals) not in (1, 2) or min(vals) < 0:
        raise argparse.ArgumentTypeError(f"expected QAT or FLOAT,QAT non-negative epochs, not {text!r}")
    return (0, vals[0]) if len(vals) == 1 else (vals[0], vals[1])


def _floats(text: str) -> list[float]:
    import argparse

    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, not {text!r}") from None


def model_kind(path: Path) -> str:
    """``onnx`` or ``state_dict``: by suffix, else by the first bytes (a torch file is a ZIP)."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".pt", ".pth", ".tar", ".ckpt"):
        return "state_dict"
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({atomic.os_reason(e)})") from None
    return "state_dict" if head == b"PK\x03\x04" else "onnx"


def _command(args, epochs) -> str:
    parts = ["asqhw import", str(args.model), f"--data {args.data}", f"--scheme {args.scheme}", f"--bits {args.bits}",
             f"--e-max {args.e_max}", f"--reduction {args.reduction}", f"--epochs {epochs[0]},{epochs[1]}",
             f"--seed {args.seed}"]
    for opt in ("mean", "std"):
        if getattr(args, opt):
            parts.append(f"--{opt} {','.join(repr(v) for v in getattr(args, opt))}")
    for opt in ("int_exact_epochs", "name", "threads", "subset", "out"):
        if getattr(args, opt) is not None:
            parts.append(f"--{opt.replace('_', '-')} {getattr(args, opt)}")
    return " ".join(parts)


def _network(args, src: Path, scheme, name: str | None):
    """``(factory_net, spec, fit)``: the float network, its graph spec, and a data fit to apply (or None)."""
    from asqhw.golden.qat.graphspec import spec_of

    if model_kind(src) == "onnx":
        from asqhw.golden.qat.onnx_import import build_net, fit_identity_batchnorms, import_onnx

        imp = import_onnx(src, name)
        net = build_net(imp, scheme)
        return net, imp.spec, lambda x: fit_identity_batchnorms(net, imp, x)
    from asqhw.golden.qat.authors import authors_resnet18, load_state

    net, _ = authors_resnet18(load_state(src), scheme, where=str(src))
    spec = spec_of(net)
    spec["name"] = name
    return net, spec, None


def cmd_import(args) -> int:
    import torch

    from asqhw.core import imagefolder
    from asqhw.golden.qat.checkpoint import save_checkpoint
    from asqhw.golden.qat.data import load_data
    from asqhw.golden.qat.graphspec import NAME_RE, safe_name
    from asqhw.golden.qat.imported import renormalised, train_imported
    from asqhw.golden.qat.scheme import Scheme

    src = Path(args.model)
    if not src.is_file():
        raise UserError(f"model {src} does not exist")
    scheme = Scheme(args.scheme, args.bits, e_max=args.e_max, reduction=args.reduction)
    if args.name is not None and (not NAME_RE.match(args.name) or args.name in ("input", "vec")):
        raise UserError(f"--name must match [a-z][a-z0-9_]* (at most 64 characters), not {args.name!r}")
    stem = args.name or (safe_name(src.stem) if model_kind(src) == "onnx" else "resnet18")
    out = atomic.check_target(args.out or f"{stem}_{args.scheme.replace('+', '_')}{args.bits}.pt", args.force,
                              need_dir=True)
    if args.threads is None and args.data == "digits":
        args.threads = 1            # as asqhw train: more threads only add overhead for digit-sized networks
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, not {args.threads}")
    if args.subset is not None and args.subset < 1:
        raise UserError(f"--subset must be at least 1, not {args.subset}")
    if (args.mean is None) != (args.std is None):
        raise UserError("--mean and --std go together")
    if args.int_exact_epochs is None:
        from asqhw.golden.qat.intexact import default_epochs

        args.int_exact_epochs = default_epochs(args.data)
    if args.int_exact_epochs < 0:
        raise UserError(f"--int-exact-epochs must be at least 0, not {args.int_exact_epochs}")

    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    t0 = time.perf_counter()
    try:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        torch.use_deterministic_algorithms(True)
        torch.manual_seed(args.seed)
        net, spec, fit = _network(args, src, scheme, stem)
        data_spec = args.data
        if data_spec.startswith(imagefolder.PREFIX) and imagefolder.parse_spec(data_spec)[0] is None:
            data_spec = imagefolder.canonical_spec(data_spec, spec["input_shape"])
        data = load_data(data_spec)
        if args.mean is not None:
            data = renormalised(data, args.mean, args.std)
        if tuple(data.x_train.shape[1:]) != tuple(spec["input_shape"]):
            raise UserError(f"{src} takes {'x'.join(map(str, spec['input_shape']))} inputs, {data.spec} has "
                            f"{'x'.join(map(str, data.x_train.shape[1:]))} images")
        if data.classes > spec["classes"]:
            raise UserError(f"{data.spec} has {data.classes} classes, {src} only {spec['classes']} outputs")
        if fit is not None:
            if not args.quiet:
                print("fitting the identity BatchNorms to 256 training images", file=sys.stderr, flush=True)
            fit(data.x_train[:256])
        epochs = args.epochs or (0, None)
        ckpt = train_imported(data, scheme, spec, lambda s: net, float_epochs=epochs[0], qat_epochs=epochs[1],
                              seed=args.seed, subset=args.subset, progress=not args.quiet,
                              int_exact_epochs=args.int_exact_epochs)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
    secs = time.perf_counter() - t0
    ckpt["command"] = _command(args, ckpt["epochs"])
    ckpt["source"] = str(src)
    save_checkpoint(out, ckpt, force=args.force)
    ops = [nd["op"] for nd in spec["nodes"]]
    n_ad = sum(1 for nd in net.nodes if nd.op == "quant" and net.units[nd.name].adapter is not None)
    print(f"{spec['name']} from {src}: {ops.count('conv')} conv, {ops.count('linear')} linear, {ops.count('add')} add, "
          f"{ops.count('quant')} quantisers ({n_ad} with adapters), input {'x'.join(map(str, spec['input_shape']))}, "
          f"{spec['classes']} classes")
    print(f"scheme {scheme.name} {scheme.bits}-bit on {data.spec}, seed {args.seed}")
    tuned = f", {ckpt['epochs'][0]} epochs fine-tuned" if ckpt["epochs"][0] else ""
    print(f"float accuracy {ckpt['float_acc']:.2f}% (imported{tuned})")
    ie = ckpt.get("int_exact_epochs", 0)
    print(f"QAT accuracy   {ckpt['qat_acc']:.2f}% ({ckpt['epochs'][1]} epochs" + (
        f", then {ie} integer-exact: the integer network's; {ckpt['fake_quant_acc']:.2f}% fake-quantised before them)"
        if ie else ")"))
    print(f"{secs:.1f} s, {used} thread{'s' if used > 1 else ''}")
    print(f"wrote {out}; next: asqhw golden export --model {out} --out DIR", file=sys.stderr)
    return 0


def register(sub) -> None:
    """Add the ``import`` subcommand to the CLI's subparsers."""
    from asqhw.golden.qat.scheme import E_MAX_CHOICES, SCHEMES

    p = sub.add_parser("import", help="a float ONNX model (or the authors' ResNet-18 state dict) to a QAT checkpoint")
    p.add_argument("model", metavar="MODEL", help="MODEL.onnx, or a .pt state dict in the authors' ResNet-18 layout")
    p.add_argument("--data", default="digits", help="'digits' (default), 'cifar10:DIR' or 'imagefolder:[CxHxW:]DIR' "
                                                   "(default size: the model's input)")
    p.add_argument("--scheme", choices=list(SCHEMES), default="asq+post")
    p.add_argument("--bits", type=int, default=4, help="activation and weight bits of the inner layers")
    p.add_argument("--e-max", choices=list(E_MAX_CHOICES), default="default")
    p.add_argument("--reduction", type=int, default=4, help="adapter reduction r (hidden width C//r)")
    p.add_argument("--epochs", type=_epochs, default=None, metavar="QAT|FLOAT,QAT",
                   help="QAT epochs (default: the data set's recipe), or float fine-tuning then QAT epochs")
    p.add_argument("--int-exact-epochs", type=int, default=None, metavar="N",
                   help="final QAT epochs whose forward pass is the integer network, bit for bit (as asqhw train; "
                        "default 3 digits, 1 otherwise; 0: none)")
    p.add_argument("--mean", type=_floats, default=None, metavar="M[,M,M]",
                   help="the per-channel mean the model was trained with, on pixels in [0, 1] (default: the data set's)")
    p.add_argument("--std", type=_floats, default=None, metavar="S[,S,S]", help="the per-channel std, with --mean")
    p.add_argument("--name", default=None, help="network name (default: the file name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 for digits, else torch's choice)")
    p.add_argument("--subset", type=int, default=None, help="train on the first N training samples only")
    p.add_argument("--out", metavar="CHECKPOINT", help="checkpoint file (default: NAME_SCHEMEBITS.pt)")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_import)
