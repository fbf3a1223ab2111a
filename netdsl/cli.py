"""The `netdsl` command. Every user error is printed as `file:line:col:
message` with the source line, a caret and a hint, and exits with status 2."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from . import passes
from . import argtypes
from .compiler import compile_graph
from .errors import NetDslError, format_error
from .inspect.transforms import TRANSFORMS
from .options import device_list, parse_sets
from .compile_command import PLACEMENTS, cmd_compile
from .userpaths import check_out_dir


def cmd_info(args) -> int:
    from .plan_report import memory_table
    from .report import info_text
    g = compile_graph(args.file, overrides=parse_sets(args.set), training=True)
    batch = args.batch or g.graph["train"].batch
    where, placement = PLACEMENTS["cuda"]
    if args.ranks > 1:  # data parallel: each rank plans its share of the batch
        from .distributed.report import ranks_text
        batch = _local_batch(batch, args.ranks)
    plan = passes.plan_step(g, batch, "cuda", placement)
    print(info_text(g, batch, memory_table(plan, where)))
    if args.ranks > 1:
        print("\n" + ranks_text(plan, args.ranks, batch))
    return 0


def _local_batch(batch: int, ranks: int) -> int:
    if batch % ranks:
        raise NetDslError(f"the batch of {batch} does not split evenly over {ranks} ranks",
                          hint=f"give a batch that is a multiple of {ranks} (--batch)")
    return batch // ranks


def cmd_train(args) -> int:
    from .distributed import World
    world = World.from_environment()  # one process, unless started by mpiexec (docs/distributed.md)
    world.quiet_unless_root()
    with world.stop_all_on_error():
        return _train(args, world)


def _train(args, world) -> int:
    from .train.launch import RunFinished, resume_run, start_run
    progress = False if args.no_progress else None
    if args.resume and args.init:
        raise NetDslError(f"--init and --resume cannot be combined: --init starts a new run from the weights in "
                          f"{args.init} (at epoch 1, momentum zero), --resume continues {args.resume} with its own",
                          hint="to continue a run, drop --init; to fine-tune from its weights, drop --resume and "
                          f"give --init {Path(args.resume) / 'checkpoint.npz'}")
    if args.resume:
        fixed = argtypes.resume_conflicts(args)
        if fixed:
            raise NetDslError(f"--resume continues the run as it was started; it does not take {', '.join(fixed)}",
                              hint="the network, its settings, the batch, the seed and the data come from "
                              f"{args.resume}/config.json; --epochs, --save-every, --workers and --backend apply")
        try:
            trainer = resume_run(args.resume, None if args.backend == "auto" else args.backend, progress,
                                 args.devices, args.epochs, args.save_every, args.workers, world=world)
        except RunFinished as finished:
            print(finished)
            return 0
    else:
        if not args.file:
            raise NetDslError("train needs a .net file (or --resume RUN)")
        trainer = start_run(args.file, parse_sets(args.set), args.data, args.out, args.backend, args.epochs,
                            args.batch, args.seed, args.workers, args.save_every, progress, args.devices, world=world,
                            init=args.init)
    history = trainer.run()
    if history:
        last = history[-1]
        print(f"done: {len(history)} epoch(s); validation top-1 error {last['val_top1_error']:.2%}, "
              f"top-5 {last['val_top5_error']:.2%}; run in {trainer.run_dir}")
    return 0


def cmd_test(args) -> int:
    from .train.launch import in_run
    if args.file and (len(args.checkpoint) > 1 or in_run(args.checkpoint[0])):
        # the network comes from the checkpoint's run; a second source of it would be ignored
        raise NetDslError(f"test takes the network from the checkpoint's run directory, not from {args.file}",
                          hint="leave the .net file out: `netdsl test --checkpoint CKPT --data DIR` (a .net file "
                          "is taken only with one checkpoint outside a run, as `netdsl import` writes)")
    if args.file and (args.sweep or args.transform):
        raise NetDslError(f"--sweep and --transform take the network of a checkpoint outside a run from the .net "
                          f"file of its name beside it, not from {args.file}",
                          hint="leave the .net file out, with FILE.net beside FILE.npz")
    if args.transform not in (None, "none") and args.ten_crop:
        raise NetDslError(f"--transform {args.transform} and --ten-crop cannot be combined: a transform acts on "
                          "the one crop the network sees", hint="drop --ten-crop (or --transform)")
    if len(args.checkpoint) > 1:
        from .inspect.ensemble import check_members
        check_members(args.checkpoint)  # all refused before any is evaluated
    if args.sweep:
        from .inspect.sweep import sweep_command
        return sweep_command(args)
    if len(args.checkpoint) > 1 or args.transform:
        from .inspect.ensemble import ensemble_errors, test_table
        result = ensemble_errors(args.checkpoint, args.data, args.ten_crop, args.transform, args.backend,
                                 args.batch, args.devices, False if args.no_progress else None)
        if len(args.checkpoint) > 1:
            print(test_table(result))
        else:  # one checkpoint: the plain test command's line, whatever the transform
            s = result["members"][0][1]
            print(f"{s['images']} validation images ({result['mode']}): loss {s['loss']:.4f}, "
                  f"top-1 error {s['top1_error']:.2%}, top-5 error {s['top5_error']:.2%}")
        return 0
    args.checkpoint = args.checkpoint[0]
    from .train.launch import test_checkpoint
    result = test_checkpoint(args.checkpoint, args.data, args.ten_crop, args.backend, args.batch, args.devices,
                             False if args.no_progress else None, network=args.file)
    crops = "ten-crop" if result["ten_crop"] else "centre crop"
    print(f"{result['images']} validation images ({crops}): loss {result['loss']:.4f}, "
          f"top-1 error {result['top1_error']:.2%}, top-5 error {result['top5_error']:.2%}")
    return 0


def cmd_predict(args) -> int:
    members = [a for a in args.images if a.endswith(".npz")]  # more checkpoints: an ensemble
    if members:
        from .inspect.ensemble import check_members, predict_ensemble, predict_text
        check_members([args.checkpoint] + members)
        images = [a for a in args.images if not a.endswith(".npz")]
        if not images:
            raise NetDslError("predict needs at least one image after the checkpoints")
        print(predict_text(predict_ensemble([args.checkpoint] + members, images, args.backend, args.devices)))
        return 0
    from .train.launch import predict
    for path, ranked in predict(args.checkpoint, args.images, args.backend, args.devices, network=args.net):
        print(path)
        for name, p in ranked:
            print(f"  {p:7.2%}  {name}")
    return 0


def cmd_prepare(args) -> int:
    from .data.prepare import prepare
    try:
        data = prepare(args.dir, size=args.size, workers=args.workers)
    except ValueError as exc:
        raise NetDslError(str(exc)) from None
    print(f"{len(data.train_labels)} training and {len(data.val_labels)} validation images, "
          f"{len(data.classes)} classes, {data.size}x{data.size}, cached in {data.cache_dir}"
          + (f"; {len(data.skipped)} unreadable file(s) skipped" if data.skipped else ""))
    return 0


def cmd_make_dataset(args) -> int:
    from .data.synthetic import make_digits, make_shapes
    check_out_dir(args.dir, run=False)
    try:
        root = make_shapes(args.dir, seed=args.seed) if args.kind == "shapes" else make_digits(args.dir, seed=args.seed)
    except (ValueError, ImportError) as exc:
        raise NetDslError(str(exc)) from None
    print(f"wrote the {args.kind} dataset to {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netdsl", description="Describe, compile and train AlexNet-family networks.")
    sub = p.add_subparsers(dest="command", required=True)

    def net_command(name, help_text, fn):
        c = sub.add_parser(name, help=help_text)
        c.add_argument("file", help="a .net file")
        c.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a param or train setting")
        c.set_defaults(fn=fn)
        return c

    c = net_command("info", "per-layer table and totals", cmd_info)
    c.add_argument("--batch", type=argtypes.batch, help="batch size for memory figures (default: the train block's)")
    c.add_argument("--ranks", type=argtypes.positive, default=1,
                   help="data-parallel ranks sharing the batch: the layout and gradient bytes per step per rank")
    c = net_command("compile", "check a network and write its graph", cmd_compile)
    c.add_argument("-o", "--output", metavar="DIR", help="output directory (default out/<network>)")
    c.add_argument("--dump-after", metavar="PASS", help="print the graph (or the plan) after this pass")
    c.add_argument("--batch", type=argtypes.batch, help="batch size of the planned step (default: the train block's)")
    c.add_argument("--target", choices=["c", "cuda", "all"],
                   help="also plan the training step and write its kernels, plan.json and memory.json "
                        "(cuda: and cubins for sm_80 and sm_90 with their registers, where nvcc is on PATH)")

    c = sub.add_parser("train", help="train a network on an image folder (or the built-in shapes data)")
    c.add_argument("file", nargs="?", help="a .net file")
    c.add_argument("--data", metavar="DIR", help="ImageNet-layout folder: DIR/train/<class>/*, DIR/val/<class>/*")
    c.add_argument("--out", metavar="RUN", help="run directory (default runs/<network>-<time>)")
    c.add_argument("--resume", metavar="RUN", help="continue the run in RUN exactly where it stopped")
    c.add_argument("--init", metavar="CKPT", help="start a new run from the weights in CKPT (a run's checkpoint or "
                   "`netdsl import`'s .npz), matched by name and shape; the rest keep the file's init")
    c.add_argument("--epochs", type=argtypes.positive, help="with --resume: train the run to this many epochs")
    c.add_argument("--batch", type=argtypes.batch)
    c.add_argument("--seed", type=argtypes.non_negative)
    c.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a param or train setting")
    c.add_argument("--workers", type=argtypes.positive, help="loader threads (default 2)")
    c.add_argument("--save-every", type=argtypes.non_negative, metavar="N", help="also checkpoint every N batches")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(fn=cmd_train)

    c = sub.add_parser("test", help="top-1/top-5 error of a checkpoint on DIR/val")
    c.add_argument("file", nargs="?", help="the network of a checkpoint outside a run directory (as `netdsl import` "
                   "writes; default: the .net file of the same name beside it); refused for a run's checkpoint")
    c.add_argument("--checkpoint", required=True, action="append", metavar="CKPT",
                   help="repeat for an ensemble: the members' softmax outputs are averaged")
    c.add_argument("--transform", choices=sorted(TRANSFORMS), help="errors with every image transformed so")
    c.add_argument("--data", required=True, metavar="DIR")
    c.add_argument("--ten-crop", action=argparse.BooleanOptionalAction,
                   help="average the softmax over the paper's ten patches (default: the file's `test` setting)")
    c.add_argument("--batch", type=argtypes.batch)
    c.add_argument("--sweep", metavar="KIND=START:STOP:STEP",
                   help="errors and p(true class) against rotate (degrees), scale or translate (pixels): "
                        "a table, a CSV and a PNG (see docs/questions.md)")
    c.add_argument("--fill", choices=["reflect", "black"], default="reflect",
                   help="with --sweep: what fills the crop where the moved image leaves it (default reflect)")
    c.add_argument("-o", "--output", metavar="DIR", help="with --sweep: folder for the CSV and PNG "
                   "(default: the checkpoint's)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(fn=cmd_test)

    c = sub.add_parser("predict", help="top-5 classes of images")
    c.add_argument("checkpoint", metavar="CKPT")
    c.add_argument("images", nargs="+", metavar="IMAGE", help="images; .npz files first are more ensemble members")
    c.add_argument("--net", metavar="FILE", help="the network of a checkpoint outside a run directory (as `netdsl "
                   "import` writes; default: the .net file of the same name beside it)")
    c.set_defaults(fn=cmd_predict)

    c = sub.add_parser("prepare", help="decode an image folder into the preprocessing cache")
    c.add_argument("dir")
    c.add_argument("--size", type=argtypes.positive, default=256, help="short side and square crop (default 256)")
    c.add_argument("--workers", type=argtypes.positive, help="decoding processes (default: one per core)")
    c.set_defaults(fn=cmd_prepare)

    c = sub.add_parser("make-dataset", help="write a built-in dataset as an ImageNet-layout folder")
    c.add_argument("kind", choices=["shapes", "digits"])
    c.add_argument("dir")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(fn=cmd_make_dataset)

    for c in sub.choices.values():
        if c.get_default("fn") in (cmd_info, cmd_compile, cmd_make_dataset, cmd_prepare):
            continue
        c.add_argument("--backend", default="auto", choices=["auto", "reference", "cpu", "cuda"],
                       help="auto: cuda if PyCUDA sees a GPU, else cpu if a C compiler is here, else reference")
        c.add_argument("--devices", type=device_list, metavar="0,1",
                       help="physical GPUs for the logical gpu0, gpu1, ... (cuda; default: all on GPU 0)")
    from .inspect.commands import register as register_inspection
    register_inspection(sub)  # show, compare, ablate, neighbours, export, time: they add their own --backend
    return p


def own_words(previous):
    """A warnings.showwarning printing netdsl's own warnings (skipped images, empty class folders)
    as `warning: ...` lines, without Python's source path and code line; others as before."""
    from .data.folder import DataWarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, DataWarning):
            print(f"warning: {message}", file=sys.stderr, flush=True)
        else:
            previous(message, category, filename, lineno, file, line)
    return show


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = own_words(warnings.showwarning)
        return _main(args)


def _main(args) -> int:
    try:
        code = args.fn(args)
        sys.stdout.flush()  # inside the try: a closed pipe fails here, not in the interpreter's exit
        return code
    except NetDslError as err:
        print(format_error(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (`| head`) stopped reading: not an error. Point stdout at devnull so the
        # interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.filename is None:  # not about a path the user can fix: a bug, shown in full
            raise
        from .userpaths import write_failure
        print(format_error(write_failure(exc)), file=sys.stderr)
        return 2
    except MemoryError:
        print("error: not enough memory for this network at this batch size", file=sys.stderr)
        print("hint: lower the batch size (--batch or --set batch=...)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
