"""The inspection commands on the command line: each module's arguments and
the function that runs it. `register` is called once from cli.build_parser."""
from __future__ import annotations

BACKENDS = ["auto", "reference", "cpu", "cuda"]


def cmd_show_filters(args) -> int:
    from .filters import show_filters
    print(f"wrote {show_filters(args.run, args.layer, args.output)}")
    return 0


def register(sub) -> None:
    show = sub.add_parser("show", help="pictures of what a trained network learned")
    kinds = show.add_subparsers(dest="what", required=True)
    c = kinds.add_parser("filters", help="a convolution's kernels as an image grid, one panel per device")
    c.add_argument("run", metavar="RUN_OR_CHECKPOINT", help="a run directory (its best.npz) or a .npz checkpoint")
    c.add_argument("--layer", help="convolution statement or node name (default: the first convolution)")
    c.add_argument("-o", "--output", metavar="PNG", help="picture to write (default: beside the checkpoint)")
    c.set_defaults(fn=cmd_show_filters)
