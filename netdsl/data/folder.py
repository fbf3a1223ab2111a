"""Reading an ImageNet-style dataset folder.

Layout::

    DIR/train/<class>/<image>     one folder per class, any common image extension
    DIR/train/<class>.tar         or: one tar per class, as ILSVRC-2012 ships them (netdsl.data.tars)
    DIR/val/<class>/<image>       optional; its classes must also exist under train/
    DIR/val/<image>               or: flat, labelled by a label file (netdsl.data.vallabels)
    DIR/synsets.txt               optional "wnid human name" lines (or words.txt,
                                  LOC_synset_mapping.txt, the devkit's meta)

This module knows the source format, so it also decodes those images:
`decode_square` is the one place that turns a file into the paper's 256 x 256.

The class index is the position of the class folder name in the sorted list of
train/ folders, the convention of ImageNet tools, so the same folder always gives
the same labels. An empty class folder is kept as a class for the same reason:
dropping it would renumber every class after it.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netdsl.data import devkit, tars, vallabels

IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".webp"})
NAME_FILES = ("synsets.txt", "words.txt", "LOC_synset_mapping.txt")
JPEG_MAGIC = b"\xff\xd8\xff"

# (path, or image inside a class tar; class index)
LabelledImage = tuple["Path | tars.TarMember", int]


class DataWarning(UserWarning):
    """Something in a dataset deserves attention but does not stop the work."""


@dataclass(frozen=True)
class FolderDataset:
    root: Path
    classes: list[str]
    class_names: list[str]
    train: list[LabelledImage]
    val: list[LabelledImage]
    label_files: tuple[Path, ...] = ()  # where a flat val/'s labels (and the devkit's names) came from

    def files(self) -> list[Path | tars.TarMember]:
        """Every image of both splits, in a stable order."""
        return [path for path, _ in self.train] + [path for path, _ in self.val]

    def name_file(self) -> Path | None:
        """The file the human class names came from, if any."""
        return devkit.find(self.root, NAME_FILES)

    def watched_files(self) -> list[Path]:
        """The files on disk whose change changes the dataset: each image file (a class
        tar once, for all its images), the name file, the label files."""
        images = dict.fromkeys(source.tar if isinstance(source, tars.TarMember) else source for source in self.files())
        name_file = self.name_file()
        extra = [f for f in ([name_file] if name_file else []) + list(self.label_files) if f not in images]
        return list(images) + list(dict.fromkeys(extra))


def scan_folder(root: str | Path) -> FolderDataset:
    """List the images and labels of a dataset folder (see the module docstring)."""
    root = Path(root).expanduser().resolve()
    train_dir = root / "train"
    if not root.is_dir():
        raise ValueError(f"dataset directory {root} does not exist")
    if not train_dir.is_dir():
        raise ValueError(
            f"dataset directory {root} has no train/ folder; expected "
            f"{root}/train/<class>/<image> (and optionally {root}/val/<class>/<image>)"
        )
    classes = _class_folders(train_dir)
    class_tars = tars.class_tars(train_dir)
    if classes and class_tars:
        raise ValueError(f"{train_dir} holds both class folders ({_first(classes)}) and class tars "
                         f"({_first([t.name for t in class_tars])}); keep one of the two")
    if class_tars:
        classes = [t.stem for t in class_tars]
    if not classes:
        raise ValueError(f"{train_dir} has no class folders; expected {train_dir}/<class>/<image> "
                         f"or {train_dir}/<class>.tar")
    index = {name: i for i, name in enumerate(classes)}

    if class_tars:
        train = [(m, i) for i, t in enumerate(class_tars) for m in tars.members(t, IMAGE_EXTENSIONS)]
    else:
        train = _labelled_images(train_dir, classes, index)
    seen = {label for _, label in train}
    empty = [name for i, name in enumerate(classes) if i not in seen]
    if len(empty) == len(classes):
        raise ValueError(
            f"{train_dir} has {len(classes)} class folders but no images "
            f"(extensions read: {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    if empty:
        warnings.warn(
            f"{len(empty)} of {len(classes)} class folders in {train_dir} have no images "
            f"({_first(empty)}); they are kept as classes so the labels stay stable",
            DataWarning,
            stacklevel=2,
        )

    val_dir = root / "val"
    label_files: list[Path] = []
    loose = _images_in(val_dir) if val_dir.is_dir() else []
    if loose and not _class_folders(val_dir):
        val, label_files = vallabels.label_flat_val(root, loose, index)
    elif val_dir.is_dir():
        val_classes = _class_folders(val_dir)
        unknown = [name for name in val_classes if name not in index]
        if unknown:
            raise ValueError(
                f"{val_dir} has {len(unknown)} class folders that train/ does not have "
                f"({_first(unknown)}); every validation class needs a training folder"
            )
        val = _labelled_images(val_dir, val_classes, index)
    else:
        warnings.warn(f"{root} has no val/ folder: no validation images", DataWarning, stacklevel=2)
        val = []

    names = _read_class_names(root)
    meta = devkit.find_meta(root) if not names else None
    if meta is not None and devkit.readable(meta):  # the devkit's table names the classes when no name file does
        names = dict(devkit.read_meta(meta).values())
        label_files.append(meta)
    class_names = [names.get(name, name) for name in classes]
    return FolderDataset(root, classes, class_names, train, val, tuple(dict.fromkeys(label_files)))


def _class_folders(split_dir: Path) -> list[str]:
    # Hidden folders are tool droppings (.ipynb_checkpoints, .git), never classes.
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _labelled_images(split_dir: Path, classes: list[str], index: dict[str, int]) -> list[LabelledImage]:
    images = []
    for name in classes:
        images.extend((path, index[name]) for path in _images_in(split_dir / name))
    return images


def _images_in(folder: Path) -> list[Path]:
    # A symbolic link is listed even when it dangles or loops, so that decoding
    # fails on it and it is counted and named with the other unreadable files.
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and (p.is_symlink() or p.is_file())
    )


def _read_class_names(root: Path) -> dict[str, str]:
    """wnid -> human name from the first name file found (NAME_FILES, in order)."""
    path = devkit.find(root, NAME_FILES)
    if path is not None:
        names = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.strip().split(maxsplit=1)
            if len(parts) == 2:
                names[parts[0]] = parts[1].strip()
        return names
    return {}


def _first(names: list[str], shown: int = 5) -> str:
    listed = ", ".join(names[:shown])
    return listed + (f", ... {len(names) - shown} more" if len(names) > shown else "")


def decode_square(path: str | Path | tars.TarMember, size: int) -> np.ndarray:
    """The image at `path` (a file, or an image inside a class tar) rescaled so its
    short side is `size`, centre square kept.

    Returns RGB uint8, size x size x 3. Raises whatever the codec raises for a
    file it cannot read; callers decide whether that is fatal.
    """
    simplejpeg, image_module = _codecs()
    data = path.read_bytes() if isinstance(path, tars.TarMember) else Path(path).read_bytes()
    image = None
    if data[:3] == JPEG_MAGIC:
        try:
            # libjpeg-turbo scales by n/8 inside the DCT: the cheapest way to shrink a JPEG.
            pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=size, min_width=size)
            image = image_module.fromarray(pixels)
        except ValueError:
            pass  # CMYK, or damage libjpeg-turbo will not pass; Pillow has the last word
    if image is None:
        image = image_module.open(io.BytesIO(data))
        image.draft("RGB", (size, size))  # JPEG only: Pillow's own DCT-domain downscale
        image = _to_rgb(image, image_module)
    width, height = image.size
    if (width, height) != (size, size):
        side = min(width, height)
        box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
        image = image.resize((size, size), image_module.Resampling.BILINEAR, box=box)
    return np.asarray(image, dtype=np.uint8)


def _to_rgb(image, image_module):
    """RGB at 8 bits. Pillow's convert("RGB") clips 16-bit grey ("I;16", "I") at 255,
    which turns a 16-bit PNG white; those are scaled down by their bit depth instead."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = np.asarray(image).astype(np.int64)
        grey = np.clip(wide // 257, 0, 255).astype(np.uint8)  # 65535 -> 255, exactly
        return image_module.fromarray(grey, "L").convert("RGB")
    if image.mode == "F":
        grey = np.clip(np.nan_to_num(np.asarray(image)), 0, 255).astype(np.uint8)
        return image_module.fromarray(grey, "L").convert("RGB")
    return image.convert("RGB")


@functools.cache
def _codecs():
    # Optional dependencies: scanning a folder must work without them.
    try:
        import simplejpeg
        from PIL import Image
    except ImportError as error:
        raise ImportError(
            f"decoding images needs simplejpeg and Pillow ({error}); "
            "install them with: pip install 'netdsl[data]'"
        ) from error
    return simplejpeg, Image
