"""The inspection commands on the command line: each module's arguments and
the function that runs it. `register` is called once from cli.build_parser."""
from __future__ import annotations

from ..options import device_list, parse_sets
from ..userpaths import check_out_dir, check_out_file

BACKENDS = ["auto", "reference", "cpu", "cuda"]


def with_backend(c, default: str = "auto") -> None:
    c.add_argument("--backend", default=default, choices=BACKENDS,
                   help="auto: cuda if PyCUDA sees a GPU, else cpu if a C compiler is here, else reference")
    c.add_argument("--devices", type=device_list, metavar="0,1",
                   help="physical GPUs for the logical gpu0, gpu1, ... (cuda; default: all on GPU 0)")


def cmd_show_filters(args) -> int:
    from .filters import show_filters
    if args.output:
        check_out_file(args.output, "-o")
    print(f"wrote {show_filters(args.run, args.layer, args.output)}")
    return 0


def cmd_compare(args) -> int:
    from .compare import compare
    check_out_file(args.output, "-o")
    text, written = compare(args.runs, args.output, args.target)
    print(text)
    print(f"wrote {written}")
    return 0


def cmd_export(args) -> int:
    from .onnx_export import OPSET, export
    check_out_file(args.output, "-o")
    written, outputs = export(args.checkpoint, args.output)
    shown = " and ".join(f"`{name}`" for name in outputs)
    print(f"wrote {written} (ONNX opset {OPSET}; input `image`, output{'s' if len(outputs) > 1 else ''} {shown})")
    return 0


def cmd_import(args) -> int:
    from .onnx_import import import_onnx
    net, weights = import_onnx(args.model, args.output, args.weights, flat=args.flat, loss=not args.no_loss)
    print(f"wrote {net} and its weights {weights}")
    return 0


def cmd_show_saliency(args) -> int:
    from .saliency import show_saliency
    if args.output:
        check_out_file(args.output, "-o")
    print(f"wrote {show_saliency(args.checkpoint, args.image, args.klass, args.output)}")
    return 0


def cmd_ablate(args) -> int:
    from .ablate import ablate
    text, written = ablate(args.file, args.vary, parse_sets(args.set), args.out, args.data, args.backend,
                           args.epochs, args.batch, args.seed, args.workers, args.save_every,
                           False if args.no_progress else None, args.target, args.devices)
    print(text)
    print(f"wrote {written}")
    return 0


def cmd_time(args) -> int:
    if args.predict:  # the time model: nothing runs
        from .predict import predict
        print(predict(args.file, parse_sets(args.set), args.predict, args.batch))
        return 0
    from .timing import time_network
    print(time_network(args.file, parse_sets(args.set), args.backend, args.batch, args.repeat, args.torch))
    return 0


def cmd_neighbours(args) -> int:
    from .neighbours import show_neighbours
    if args.output:
        check_out_dir(args.output, run=False)
    for written in show_neighbours(args.checkpoint, args.data, args.images, args.layer, args.k, args.output):
        print(f"wrote {written}")
    return 0


def cmd_show_augment(args) -> int:
    from .augment_grid import show_augment
    written = show_augment(args.file, parse_sets(args.set), args.data, args.images, args.draws, args.seed, args.output)
    print(f"wrote {written}")
    return 0


def cmd_compress(args) -> int:
    from .compress import check_settings, compress, compress_text
    check_settings(args.prune, args.quantize)
    print(compress_text(compress(args.checkpoint, args.data, args.prune, args.quantize == "int8", args.scope,
                                 args.output, args.backend, args.batch, args.devices)))
    return 0


def register(sub) -> None:
    from .. import argtypes
    show = sub.add_parser("show", help="pictures of what a trained network learned")
    kinds = show.add_subparsers(dest="what", required=True)
    c = kinds.add_parser("filters", help="a convolution's kernels as an image grid, one panel per device")
    c.add_argument("run", metavar="RUN_OR_CHECKPOINT", help="a run directory (its best.npz) or a .npz checkpoint")
    c.add_argument("--layer", help="convolution statement or node name (default: the first convolution)")
    c.add_argument("-o", "--output", metavar="PNG", help="picture to write (default: beside the checkpoint)")
    c.set_defaults(fn=cmd_show_filters)
    c = kinds.add_parser("saliency", help="the class score's gradient over the input pixels, as a heat map")
    c.add_argument("checkpoint", metavar="CHECKPOINT", help="a .npz checkpoint or a run directory")
    c.add_argument("image", metavar="IMAGE")
    c.add_argument("--class", dest="klass", type=int, metavar="K", help="class index (default: the predicted one)")
    c.add_argument("-o", "--output", metavar="PNG", help="picture to write (default: beside the checkpoint)")
    c.set_defaults(fn=cmd_show_saliency)
    c = kinds.add_parser("augment", help="a grid of training images as the train block's augmentation draws them")
    c.add_argument("file", help="a .net file")
    c.add_argument("--data", metavar="DIR", help="ImageNet-layout folder (default: the built-in shapes)")
    c.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a param or train setting")
    c.add_argument("--images", type=argtypes.positive, default=6, help="rows: training images (default 6)")
    c.add_argument("--draws", type=argtypes.positive, default=5, help="columns: augmentation draws (default 5)")
    c.add_argument("--seed", type=argtypes.non_negative, default=0)
    c.add_argument("-o", "--output", metavar="PNG", default="augment.png", help="picture (default augment.png)")
    c.set_defaults(fn=cmd_show_augment)

    c = sub.add_parser("compare", help="several runs' curves on shared axes and a table")
    c.add_argument("runs", nargs="+", metavar="RUN", help="run directories (config.json and metrics.jsonl)")
    c.add_argument("-o", "--output", metavar="PNG", default="compare.png", help="picture (default compare.png)")
    c.add_argument("--target", type=float, default=0.25, help="validation top-1 error to reach (default 0.25)")
    c.set_defaults(fn=cmd_compare)

    c = sub.add_parser("export", help="the inference graph with its trained weights as ONNX")
    c.add_argument("checkpoint", metavar="CHECKPOINT", help="a .npz checkpoint or a run directory")
    c.add_argument("-o", "--output", metavar="ONNX", default="model.onnx", help="file to write (default model.onnx)")
    c.set_defaults(fn=cmd_export)

    c = sub.add_parser("import", help="a CNN in ONNX (from torch.onnx.export) as a .net file and a checkpoint")
    c.add_argument("model", metavar="MODEL.onnx")
    c.add_argument("-o", "--output", metavar="FILE.net", help="network file to write (default: MODEL.net)")
    c.add_argument("--weights", metavar="CKPT.npz", help="checkpoint to write (default: FILE.npz beside it)")
    c.add_argument("--no-loss", action="store_true",
                   help="write the inference graph as it is (its outputs the network's final tensors, a final "
                        "Softmax kept) instead of a classifier ending in a softmax_loss; any output shape")
    c.add_argument("--flat", action="store_true",
                   help="one statement per layer: repeated regions are not gathered into blocks")
    c.set_defaults(fn=cmd_import)

    c = sub.add_parser("ablate", help="train every combination of varied settings, then compare them")
    c.add_argument("file", help="a .net file")
    c.add_argument("--vary", action="append", required=True, metavar="NAME=V1,V2",
                   help="a param or train setting and its values (repeat: every combination is trained)")
    c.add_argument("--set", action="append", metavar="NAME=VALUE", help="a fixed override for every variant")
    c.add_argument("--out", metavar="RUN", help="ablation directory (default runs/<network>-ablation)")
    c.add_argument("--data", metavar="DIR", help="ImageNet-layout folder (default: the built-in shapes)")
    c.add_argument("--epochs", type=argtypes.positive)
    c.add_argument("--batch", type=argtypes.batch)
    c.add_argument("--seed", type=argtypes.non_negative)
    c.add_argument("--workers", type=argtypes.positive, help="loader threads (default 2)")
    c.add_argument("--save-every", type=argtypes.non_negative, metavar="N", help="also checkpoint every N batches")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.add_argument("--target", type=float, default=0.25, help="validation top-1 error to reach (default 0.25)")
    with_backend(c)
    c.set_defaults(fn=cmd_ablate)

    c = sub.add_parser("time", help="per-layer forward and backward milliseconds of a training step")
    c.add_argument("file", help="a .net file")
    c.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a param or train setting")
    c.add_argument("--batch", type=argtypes.batch, help="batch size (default: the train block's)")
    c.add_argument("--repeat", type=argtypes.positive, default=5, metavar="N", help="steps timed (default 5)")
    c.add_argument("--torch", action="store_true", help="also time the network's PyTorch twin, side by side")
    c.add_argument("--predict", metavar="DEVICE", choices=["h100", "h200", "a100", "l4"],
                   help="run nothing: the cuda step's time on DEVICE from the time model, launch by launch")
    with_backend(c)
    c.set_defaults(fn=cmd_time)

    c = sub.add_parser("neighbours", help="training images closest to each query at a layer (Figure 4, right)")
    c.add_argument("checkpoint", metavar="CHECKPOINT", help="a .npz checkpoint or a run directory")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    c.add_argument("--data", required=True, metavar="DIR", help="the ImageNet-layout folder whose train/ is searched")
    c.add_argument("--layer", help="layer statement or node (default: the last hidden layer, fc7 in AlexNet)")
    c.add_argument("-k", type=argtypes.positive, default=6, help="neighbours per query (default 6)")
    c.add_argument("-o", "--output", metavar="DIR", help="folder for the pictures (default: beside the checkpoint)")
    c.set_defaults(fn=cmd_neighbours)

    from .compress import fractions
    c = sub.add_parser("compress", help="prune and quantise a checkpoint: bytes and validation errors per setting")
    c.add_argument("checkpoint", metavar="CHECKPOINT", help="a .npz checkpoint or a run directory")
    c.add_argument("--data", required=True, metavar="DIR", help="the ImageNet-layout folder whose val/ is tested")
    c.add_argument("--prune", type=fractions, metavar="F1,F2", help="fractions of the weights removed, smallest first")
    c.add_argument("--scope", choices=["layer", "global"], default="layer",
                   help="prune each weight tensor by its own threshold (default) or all by one")
    c.add_argument("--quantize", choices=["int8"], help="also each setting with per-output-channel int8 weights")
    c.add_argument("-o", "--output", metavar="DIR", help="folder for the checkpoints (default RUN/compressed)")
    c.add_argument("--batch", type=argtypes.batch)
    with_backend(c)
    c.set_defaults(fn=cmd_compress)
