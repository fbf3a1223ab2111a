"""What the train, test and predict commands do, between the command line and
the trainer: find or make the data, build the network and its executor, and
set up or reopen a run directory."""
from __future__ import annotations

import re
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..compiler import Network, compile_graph
from ..data.augment import center_crop
from ..data.folder import decode_square
from ..data.loader import BatchLoader, default_workers
from ..data.prepare import prepare
from ..data.progress import counted
from ..distributed import World, attach
from ..errors import NetDslError
from ..graph_ops import image_input
from ..userpaths import check_data_dir, check_out_dir, check_regular_file
from .checkpoints import check_checkpoint, expected_shapes, fallback_hint
from .datasets import checkpoint_test_plan, class_count, data_plan, default_dataset, input_scale, scaled
from .evaluate import evaluate, log_probabilities
from .inference import inference_executor
from .init_weights import apply_init, check_init
from .requirements import require_class_output, require_loss
from .trainer import RunOptions, Trainer, read_config, write_config


def network_from_source(source: str, file: str, overrides: dict) -> Network:
    return Network(compile_graph(text=source, file=file, overrides=overrides, training=True))


def open_data(net: Network, data_dir: str | None, workers: int | None = None, progress: bool | None = True,
              training: bool = True):
    """The prepared data; for training, its class count checked against the network's."""
    size, _, _ = data_plan(net)
    if data_dir is None:
        data_dir = default_dataset()
        print(f"no --data given: using the built-in shapes dataset at {data_dir}")
    try:
        data = prepare(data_dir, size=size, workers=workers, progress=progress is not False)
    except ValueError as exc:
        raise NetDslError(str(exc)) from None
    if training:
        check_class_count(net, data)
    return Path(data_dir), data


def check_class_count(net: Network, data) -> None:
    """More classes in the data than the network outputs: an error; fewer: a warning."""
    classes, found = class_count(net), len(data.classes)
    fix = (f"--set classes={found}" if "classes" in net.graph.graph["params"]
           else f"`input label : {found} classes` and an output layer of {found} in the file")
    if found > classes:
        raise NetDslError(f"the data has {found} classes but the network's label input has {classes}",
                          hint=f"give the network {found} classes: {fix}")
    if found < classes:
        print(f"warning: the data has {found} classes but the network's label input has {classes}: "
              f"{classes - found} outputs can never be right, and the errors are measured over {classes} "
              f"classes; {fix} sizes the network to the data", file=sys.stderr, flush=True)


def by_name(checkpoint: str, config: dict, data, data_dir: str):
    """Labels of the test folder -> the checkpoint's class indices, matched by class name (the
    folders' names): a folder with fewer or reordered classes is tested as what it names; a
    class the checkpoint was not trained on is refused. None when the names agree as they are."""
    trained = config.get("classes")
    if not trained or list(data.classes) == list(trained):
        return None
    unknown = [name for name in data.classes if name not in trained]
    if unknown:
        shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        raise NetDslError(f"{data_dir} has {len(unknown)} class(es) that {checkpoint} was not trained on: {shown}",
                          hint=f"it was trained on {len(trained)} classes: {', '.join(trained[:5])}"
                               + (", ..." if len(trained) > 5 else ""))
    return np.array([trained.index(name) for name in data.classes], dtype=np.int64)


def relabelled(batches, remap):
    for images, labels in batches:
        yield images, (labels if remap is None else remap[np.asarray(labels)])


def start_run(file: str, overrides: dict, data_dir: str | None, out: str | None, backend: str,
              epochs: int | None, batch: int | None, seed: int | None, workers: int | None, save_every: int | None,
              progress: bool | None, devices: list[int] | None = None, world: World | None = None,
              init: str | None = None) -> Trainer:
    """A new run; `init`: a checkpoint whose weights, matched by name, replace the file's init."""
    world = world or World()
    if not world.is_root:  # rank 0 makes the run (data cache, kernels, run directory); the others join it
        return resume_run(world.share(what="making the run directory"), backend, progress, devices, world=world)
    # Everything the command line names is checked before the network is built or data is read.
    check_regular_file(file, "network file")
    if out:
        check_out_dir(Path(out))
    if data_dir is not None:
        check_data_dir(data_dir)
    source = Path(file).read_text(encoding="utf-8", errors="replace")
    net = network_from_source(source, str(file), overrides)
    require_loss(net.graph, "trained")
    arrays = check_init(init, expected_shapes(net.graph)) if init else None
    options = RunOptions(epochs=epochs or net.train.epochs, batch=batch or net.train.batch,
                         seed=net.train.seed if seed is None else seed, workers=workers or default_workers(),
                         save_every=save_every or 0, progress=progress)
    data_plan(net)  # crops against the input, before any data is read
    run_dir = Path(out) if out else Path("runs") / f"{net.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_out_dir(run_dir)
    data_path, data = open_data(net, data_dir, progress=progress, training=False)
    if net.graph.graph.get("classes_from_data") and "classes" not in overrides:
        # `input label : auto`: the network is sized to the folder; the run's overrides keep the
        # count, so resume, test and predict rebuild the same network
        overrides = {**overrides, "classes": str(len(data.classes))}
        net = network_from_source(source, str(file), overrides)
        print(f"input label : auto: {len(data.classes)} classes, from {data_path}")
    check_class_count(net, data)
    executor = attach(net.executor(backend=backend, batch=world.local_batch(options.batch), seed=options.seed,
                                   devices=world.devices(devices, backend)), world)
    announce_precision(net, executor, world)
    if init:
        print(apply_init(executor, init, arrays), flush=True)
    write_config(run_dir, {"file": str(file), "source": source, "overrides": overrides,
                           "data": str(data_path.resolve()), "backend": executor.backend,
                           "classes": data.classes, "class_names": data.class_names, "options": asdict(options),
                           **({"init": str(Path(init).resolve())} if init else {})})
    np.save(run_dir / "mean.npy", data.mean)  # so predict needs neither the data nor its cache
    print(f"run directory: {run_dir}" + (f" ({world.size} ranks)" if world.size > 1 else ""))
    world.share(str(run_dir))
    return Trainer(net, data, executor, run_dir, options, world)


class RunFinished(Exception):
    """--resume of a run that has trained all its epochs: not an error (exit 0), so a script
    that resumes after a crash can tell "done" from "failed"."""


def resume_run(run_dir: str, backend: str | None, progress: bool | None, devices: list[int] | None = None,
               epochs: int | None = None, save_every: int | None = None, workers: int | None = None,
               world: World | None = None) -> Trainer:
    """Reopen a run. `epochs` extends (or states) its length; `save_every` and `workers` apply
    from here on. The checkpoint is checked whole before anything in the run is rewritten."""
    run_path = Path(run_dir)
    world = world or World()
    config = read_config(run_path)
    net = network_from_source(config["source"], config["file"], config["overrides"])
    changes = {k: v for k, v in (("epochs", epochs), ("save_every", save_every), ("workers", workers)) if v}
    options = RunOptions(**{**config["options"], **changes, "progress": progress})
    checkpoint = run_path / "checkpoint.npz"
    state = {}
    if checkpoint.exists():
        params = expected_shapes(net.graph)
        try:
            state = check_checkpoint(checkpoint, params, training=True)
        except NetDslError as err:
            raise NetDslError(err.message, hint=fallback_hint(checkpoint, params, training=True) or err.hint
                              or f"nothing in {run_path} was changed") from None
    done = state.get("epoch", 0)
    if epochs is not None and epochs < done:
        raise NetDslError(f"--epochs {epochs}: {run_path} has already trained {done} epochs",
                          hint=f"give --epochs {done + 1} or more to train further")
    if state and done >= options.epochs and state.get("next_batch", 0) == 0:
        raise RunFinished(f"nothing to do: {run_path} already finished its {options.epochs} epochs "
                          f"(the last, epoch {done}, is in its checkpoint); give --epochs {done + 1} or more "
                          "to train further")
    _, data = open_data(net, config["data"], progress=progress)
    backend = backend or config["backend"]
    executor = attach(net.executor(backend=backend, batch=world.local_batch(options.batch), seed=options.seed,
                                   devices=world.devices(devices, backend)), world)
    announce_precision(net, executor, world)
    if not state and config.get("init"):  # no checkpoint yet: the run starts from its --init weights again
        summary = apply_init(executor, config["init"])
        if world.is_root:
            print(summary, flush=True)
    trainer = Trainer(net, data, executor, run_path, options, world)
    if state:
        trainer.restore()
    if changes and world.is_root:
        write_config(run_path, {**config, "options": {**config["options"], **changes}})
    if state:
        print(f"resuming {run_dir} at epoch {trainer.epoch + 1}, batch {trainer.next_batch}"
              + (f", now for {options.epochs} epochs" if epochs else ""))
    return trainer


def checkpoint_network(checkpoint: str, network: str | None = None) -> tuple[Network, dict]:
    """The network a checkpoint belongs to, with the checkpoint checked against it (cheaply,
    before any executor is built). A run's checkpoint: from its run directory's config. A
    checkpoint outside a run (the weights `netdsl import` writes): from `network`, or the
    .net file of the same stem beside it; its config then names the file and the train
    block's options only (`network_only`: no classes, no mean image)."""
    path = Path(checkpoint)
    check_regular_file(path, "checkpoint")
    if in_run(path):
        if network is not None:
            raise NetDslError(f"{path} belongs to the run in {path.parent}, which holds its network: "
                              f"{network} would not be used", hint="leave the .net file out")
        config = read_config(path.parent)
        net = network_from_source(config["source"], config["file"], config["overrides"])
    else:
        net, config = network_only(path, network)
    params = expected_shapes(net.graph)
    try:
        check_checkpoint(path, params)
    except NetDslError as err:
        raise NetDslError(err.message, hint=fallback_hint(path, params) or err.hint) from None
    return net, config


def in_run(checkpoint: str | Path) -> bool:
    return (Path(checkpoint).parent / "config.json").exists()


def network_only(checkpoint: Path, network: str | None) -> tuple[Network, dict]:
    """The network of a checkpoint outside a run, and the config standing in for a run's."""
    beside = checkpoint.with_suffix(".net")
    if network is None and not beside.is_file():
        raise NetDslError(f"{checkpoint} is not in a run directory (no config.json beside it) and no network file "
                          f"{beside.name} is beside it",
                          hint="name the network it belongs to: `netdsl test FILE.net --checkpoint CKPT ...`, "
                          "`netdsl predict --net FILE.net CKPT IMAGE...`")
    file = Path(network) if network is not None else beside
    check_regular_file(file, "network file")
    source = file.read_text(encoding="utf-8", errors="replace")
    net = network_from_source(source, str(file), {})
    spec = net.train
    return net, {"file": str(file), "source": source, "overrides": {}, "backend": "auto", "network_only": True,
                 "options": {"epochs": spec.epochs, "batch": spec.batch, "seed": spec.seed}}


def test_checkpoint(checkpoint: str, data_dir: str, ten_crop: bool | None, backend: str, batch: int | None,
                    devices: list[int] | None = None, progress: bool | None = None,
                    network: str | None = None) -> dict:
    """Errors on DIR/val; `ten_crop` None means the file's own `test` mode; `network`: the
    .net file of a checkpoint outside a run."""
    check_regular_file(checkpoint, "checkpoint")
    check_data_dir(data_dir)
    net, config = checkpoint_network(checkpoint, network)
    require_loss(net.graph, "tested")
    test_aug = checkpoint_test_plan(net, config, ten_crop)
    _, data = open_data(net, data_dir, training=False)
    remap = by_name(checkpoint, config, data, data_dir)
    ex = net.executor(backend=backend, batch=batch or config["options"]["batch"], devices=devices)
    ex.load(checkpoint)
    ex = inference_executor(ex)  # forward-only plan: no backward buffers, dropout off
    with BatchLoader(data, "val", ex.batch, test_aug, workers=2) as loader:
        shown = counted(loader, len(loader), "testing", progress)
        result = evaluate(ex, relabelled(scaled(shown, input_scale(net)), remap))
    return {**result, "ten_crop": test_aug.crop_mode == "ten"}


def predict(checkpoint: str, images: list[str], backend: str, devices: list[int] | None = None,
            top: int = 5, network: str | None = None) -> list[tuple[str, list]]:
    for path in images:  # before the checkpoint, which may be hundreds of MB
        check_regular_file(path, "image")
    net, config = checkpoint_network(checkpoint, network)
    require_class_output(net.graph)
    prepared_size, _, _ = data_plan(net)
    side = net.graph.nodes[image_input(net.graph)].shape[1]
    decoded = []
    for path in images:
        try:
            decoded.append(decode_square(path, prepared_size))
        except Exception as exc:  # any decoder failure is a bad input file, reported per image
            raise NetDslError(f"cannot read image {path}: {decoder_reason(exc)}") from None
    ex = net.executor(backend=backend, batch=1, devices=devices)
    ex.load(checkpoint)
    mean = None if config.get("network_only") else _read_mean(Path(checkpoint).parent / "mean.npy", prepared_size)
    names = config.get("class_names") or config.get("classes") or []
    results = []
    for path, pixels in zip(images, decoded):
        batch = center_crop(pixels[None], side, mean) * np.float32(input_scale(net))
        logp = log_probabilities(ex, batch)[0]
        best = np.argsort(-logp, kind="stable")[:top]
        results.append((path, [(names[i] if i < len(names) else f"class {i}", float(np.exp(logp[i])))
                               for i in best]))
    return results


def _read_mean(path: Path, size: int) -> np.ndarray | None:
    """The run's training mean image (size x size x 3), or None when the run has none."""
    if not path.exists():
        return None
    try:
        mean = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise NetDslError(f"{path} is damaged: {exc}", hint="it is the training images' mean, written when the "
                          "run started; `netdsl prepare` of the run's data recomputes it") from None
    if mean.shape != (size, size, 3) or not np.isfinite(mean).all():
        raise NetDslError(f"{path} is damaged: a {'x'.join(map(str, mean.shape))} array where a {size}x{size}x3 "
                          "mean image belongs")
    return mean.astype(np.float32)


def decoder_reason(exc: Exception) -> str:
    """The codec's complaint without the in-memory buffer's repr Pillow puts in it."""
    text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(exc)).strip()
    if "cannot identify image file" in text or not text:
        return "not an image in a format netdsl reads (JPEG, PNG, BMP, WebP)"
    return text


def announce_precision(net, executor, world) -> None:
    """The matrix products' precision, once per run, beside the backend line."""
    if world.is_root:
        from ..precision import describe
        target = getattr(executor, "target", "") or "c"  # the reference executor computes in fp32, as C does
        print(describe(net.train.precision.name, target, executor.backend), file=sys.stderr)
