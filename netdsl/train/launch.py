"""What the train, test and predict commands do, between the command line and
the trainer: find or make the data, build the network and its executor, and
set up or reopen a run directory."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..compiler import Network, compile_graph
from ..data.augment import center_crop
from ..data.folder import decode_square
from ..data.loader import BatchLoader
from ..data.prepare import prepare
from ..errors import NetDslError
from .datasets import class_count, data_plan, default_dataset, input_scale, scaled
from .evaluate import evaluate, probabilities
from .trainer import RunOptions, Trainer, read_config, write_config


def network_from_source(source: str, file: str, overrides: dict) -> Network:
    return Network(compile_graph(text=source, file=file, overrides=overrides, training=True))


def open_data(net: Network, data_dir: str | None, workers: int | None = None, progress: bool | None = True):
    size, _, _ = data_plan(net)
    if data_dir is None:
        data_dir = default_dataset()
        print(f"no --data given: using the built-in shapes dataset at {data_dir}")
    try:
        data = prepare(data_dir, size=size, workers=workers, progress=progress is not False)
    except ValueError as exc:
        raise NetDslError(str(exc)) from None
    classes = class_count(net)
    if len(data.classes) > classes:
        raise NetDslError(f"the data has {len(data.classes)} classes but the network's label input has {classes}",
                          hint=f"--set is no help here: change `input label : {classes} classes` in the file")
    return Path(data_dir), data


def start_run(file: str, overrides: dict, data_dir: str | None, out: str | None, backend: str,
              epochs: int | None, batch: int | None, seed: int | None, workers: int, save_every: int,
              progress: bool | None, devices: list[int] | None = None) -> Trainer:
    source = Path(file).read_text()
    net = network_from_source(source, str(file), overrides)
    options = RunOptions(epochs=epochs or net.train.epochs, batch=batch or net.train.batch,
                         seed=net.train.seed if seed is None else seed, workers=workers, save_every=save_every,
                         progress=progress)
    data_path, data = open_data(net, data_dir, progress=progress)
    run_dir = Path(out) if out else Path("runs") / f"{net.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / "checkpoint.npz").exists():
        raise NetDslError(f"{run_dir} already holds a run", hint=f"continue it with --resume {run_dir}, "
                          "or choose another --out")
    executor = net.executor(backend=backend, batch=options.batch, seed=options.seed, devices=devices)
    write_config(run_dir, {"file": str(file), "source": source, "overrides": overrides,
                           "data": str(data_path.resolve()), "backend": executor.backend,
                           "classes": data.classes, "class_names": data.class_names, "options": asdict(options)})
    np.save(run_dir / "mean.npy", data.mean)  # so predict needs neither the data nor its cache
    print(f"run directory: {run_dir}")
    return Trainer(net, data, executor, run_dir, options)


def resume_run(run_dir: str, backend: str | None, progress: bool | None, devices: list[int] | None = None) -> Trainer:
    config = read_config(Path(run_dir))
    net = network_from_source(config["source"], config["file"], config["overrides"])
    options = RunOptions(**{**config["options"], "progress": progress})
    _, data = open_data(net, config["data"], progress=progress)
    executor = net.executor(backend=backend or config["backend"], batch=options.batch, seed=options.seed,
                            devices=devices)
    trainer = Trainer(net, data, executor, Path(run_dir), options)
    if (Path(run_dir) / "checkpoint.npz").exists():
        trainer.restore()
        print(f"resuming {run_dir} at epoch {trainer.epoch + 1}, batch {trainer.next_batch}")
    return trainer


def checkpoint_network(checkpoint: str) -> tuple[Network, dict]:
    """The network a checkpoint belongs to, from its run directory's config."""
    path = Path(checkpoint)
    if not path.exists():
        raise NetDslError(f"no checkpoint at {path}")
    config = read_config(path.parent)
    return network_from_source(config["source"], config["file"], config["overrides"]), config


def test_checkpoint(checkpoint: str, data_dir: str, ten_crop: bool, backend: str, batch: int | None,
                    devices: list[int] | None = None) -> dict:
    net, config = checkpoint_network(checkpoint)
    _, data = open_data(net, data_dir)
    _, _, test_aug = data_plan(net, ten_crop=ten_crop)
    ex = net.executor(backend=backend, batch=batch or config["options"]["batch"], devices=devices)
    ex.load(checkpoint)
    with BatchLoader(data, "val", ex.batch, test_aug, workers=2) as loader:
        return evaluate(ex, scaled(loader, input_scale(net)))


def predict(checkpoint: str, images: list[str], backend: str, devices: list[int] | None = None,
            top: int = 5) -> list[tuple[str, list]]:
    net, config = checkpoint_network(checkpoint)
    prepared_size, _, _ = data_plan(net)
    side = net.graph.nodes[next(n for n in net.graph if net.graph.nodes[n].get("role") == "input"
                                and not net.graph.nodes[n]["label"])]["shape"][1]
    ex = net.executor(backend=backend, batch=1, devices=devices)
    ex.load(checkpoint)
    mean_file = Path(checkpoint).parent / "mean.npy"
    mean = np.load(mean_file) if mean_file.exists() else None
    names = config.get("class_names") or config.get("classes")
    results = []
    for path in images:
        try:
            pixels = decode_square(path, prepared_size)
        except Exception as exc:  # any decoder failure is a bad input file, reported per image
            raise NetDslError(f"cannot read image {path}: {exc}") from None
        batch = center_crop(pixels[None], side, mean) * np.float32(input_scale(net))
        p = probabilities(ex, batch)[0]
        best = np.argsort(-p)[:top]
        results.append((path, [(names[i] if i < len(names) else f"class {i}", float(p[i])) for i in best]))
    return results
