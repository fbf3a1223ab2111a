"""A tiny network and a finished one-epoch run of it, for tests that damage
run directories or pass bad arguments (seconds on the reference backend)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from netdsl.cli import main

TINY = """network tiny
input image : 3 x 16 x 16
input label : 10 classes
c = conv(image, 4, size=3) -> relu -> maxpool(2)
f = fc(c, 10)
loss = softmax_loss(f, label)
train { batch = 16; epochs = 1; seed = 1; optimizer = sgd(lr=0.01); schedule = constant
        augment = [random_crop(16, from=16), scale(0.01)]; test = TEST }
"""


def write_net(folder: Path, test: str = "center_crop", name: str = "tiny.net", text: str = TINY) -> Path:
    path = folder / name
    path.write_text(text.replace("TEST", test))
    return path


def train_run(net: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["train", str(net), "--data", str(data), "--out", str(out), "--backend", "reference",
                 "--no-progress", *extra])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file's content hash, to show that nothing was changed, removed or added."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to
