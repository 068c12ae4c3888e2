"""``asqhw standin -o DIR``: write the CIFAR-10-format stand-in (digits in cluttered 32x32x3 images)."""

from __future__ import annotations

import sys
import time

from asqhw.core.errors import UserError

__all__ = ["register", "cmd_standin"]


def cmd_standin(args) -> int:
    from asqhw.golden.qat.standin import write_standin

    if args.train < 5 or args.test < 1:
        raise UserError(f"--train must be at least 5 and --test at least 1, not {args.train} and {args.test}")

    def show(done, total):
        if not args.quiet:
            print(f"\rrendered {done}/{total} images", end="" if done < total else "\n", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    root = write_standin(args.out, args.train, args.test, args.seed, args.force, show)
    print(f"wrote {root}: {args.train} training images in 5 batches, {args.test} test images "
          f"(seed {args.seed}, {time.perf_counter() - t0:.1f} s); read it with --data cifar10:{root}")
    return 0


def register(sub) -> None:
    """Add the ``standin`` subcommand to the CLI's subparsers."""
    p = sub.add_parser("standin", help="write a CIFAR-10-format stand-in data set (digits in cluttered 32x32x3 images)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="directory for the python pickle batches")
    p.add_argument("--train", type=int, default=10000, help="training images (default 10000)")
    p.add_argument("--test", type=int, default=2000, help="test images (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite existing batch files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_standin)
