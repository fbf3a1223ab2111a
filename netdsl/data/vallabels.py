"""Labels for a flat val/ folder: the ILSVRC-2012 download's 50,000 loose JPEGs.

The validation images of the official download carry no class in their path, so
their labels come from a label file. Looked for in DIR, DIR/val and the devkit's
DIR/ILSVRC2012_devkit_t12/data, the first kind found wins, in this order:

1. val.txt or labels.txt: `FILE CLASS` per line (a file of val/, a train/ class name);
2. LOC_val_solution.csv (Kaggle): `ImageId,PredictionString`, the WNID the first token;
3. ILSVRC2012_validation_ground_truth.txt (devkit): line i holds the 1-based
   ILSVRC2012_ID of ILSVRC2012_val_<i, 8 digits>.JPEG; the IDs become WNIDs through
   the devkit's meta (netdsl.data.devkit).

Classes are matched by name (the WNID: the train/ folder or tar name), never by
index, so a label file written for another class order cannot silently mislabel.
Every mismatch is an error before anything is decoded: a val image without a
label, a label naming a class train/ lacks or a file val/ lacks, a file labelled
twice. The error carries the label file and line, in the project's one format.
"""

from __future__ import annotations

import re
from pathlib import Path

from netdsl.data import devkit
from netdsl.data.devkit import find, label_dirs
from netdsl.errors import NetDslError, Pos

LIST_FILES = ("val.txt", "labels.txt")
KAGGLE_FILE = "LOC_val_solution.csv"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d{8})$")


def label_flat_val(root: Path, images: list[Path], index: dict[str, int]) -> tuple[list[tuple[Path, int]], list[Path]]:
    """(image, class index) for every image of a flat val/, and the files the labels came from."""
    by_name = {path.name: path for path in images}
    listing = find(root, LIST_FILES)
    if listing is not None:
        return _match(_list_lines(listing), by_name, index, listing), [listing]
    kaggle = find(root, (KAGGLE_FILE,))
    if kaggle is not None:
        return _match(_kaggle_lines(kaggle, by_name), by_name, index, kaggle), [kaggle]
    truth = find(root, (GROUND_TRUTH,))
    if truth is not None:
        meta = devkit.find_meta(root)
        if meta is None:
            raise NetDslError(f"{truth} gives ILSVRC2012_IDs, and no devkit meta maps them to class names: "
                              f"looked for {' or '.join(devkit.META_FILES)} in {_where(root)}",
                              hint="put the devkit's meta.mat (read with scipy) or a meta.txt of "
                                   "`ILSVRC2012_ID WNID` lines beside the ground-truth file")
        wnids = {number: wnid for number, (wnid, _) in devkit.read_meta(meta).items()}
        return _match(_truth_lines(truth, images, wnids, meta), by_name, index, truth), [truth, meta]
    looked = ", ".join([*LIST_FILES, KAGGLE_FILE, GROUND_TRUTH])
    raise NetDslError(f"{root / 'val'} holds {len(images)} images and no class folders, and no label file "
                      f"was found: looked for {looked} in {_where(root)}",
                      hint="give each image's class in val.txt (`FILE CLASS` per line), or sort val/ into "
                           "class folders as train/ is")


def _where(root: Path) -> str:
    return ", ".join(str(d) for d in label_dirs(root))


# Each reader yields (line number, column of the class, file name, class name).

def _list_lines(path: Path):
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise _error(path, number, 1, f"expected `FILE CLASS`, found {len(parts)} field(s)")
        yield number, line.index(parts[1], line.index(parts[0]) + len(parts[0])) + 1, parts[0], parts[1]


def _kaggle_lines(path: Path, by_name: dict[str, Path]):
    # ImageId is the file name without its extension; the files may be .JPEG or .jpg.
    stems = {Path(name).stem: name for name in by_name}
    lines = _lines(path)
    first = next(lines, None)
    if first is None or first[1].replace(" ", "").lower() != "imageid,predictionstring":
        raise _error(path, first[0] if first else 1, 1, "expected the header `ImageId,PredictionString`")
    for number, line in lines:
        image, comma, prediction = line.partition(",")
        if not comma or not prediction.split():
            raise _error(path, number, 1, "expected `ImageId,PredictionString` with a class first")
        yield number, len(image) + 2 + (len(prediction) - len(prediction.lstrip())), \
            stems.get(image.strip(), image.strip()), prediction.split()[0]


def _truth_lines(path: Path, images: list[Path], wnids: dict[int, str], meta: Path):
    for image in images:
        if not VAL_NUMBER.match(image.stem):
            raise NetDslError(f"{image} is not named ILSVRC2012_val_<8 digits>, so {path} cannot label it",
                              hint="the ground-truth file labels the official file names only; "
                                   "give other files' classes in val.txt (`FILE CLASS` per line)")
    names = {int(VAL_NUMBER.match(image.stem).group(1)): image.name for image in images}
    for number, line in _lines(path):
        line = line.strip()
        if not line.isdigit():
            raise _error(path, number, 1, f"expected a 1-based ILSVRC2012_ID, found `{line}`")
        if int(line) not in wnids:
            raise _error(path, number, 1, f"ILSVRC2012_ID {line} is not in {meta}")
        yield number, 1, names.get(number, f"ILSVRC2012_val_{number:08d}.JPEG"), wnids[int(line)]


def _lines(path: Path):
    """(1-based line number, text) of each non-blank line; leading blanks are kept, so
    that columns count from the line's start."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield number, line.rstrip()


def _match(lines, by_name: dict[str, Path], index: dict[str, int], path: Path) -> list[tuple[Path, int]]:
    labels: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for number, column, name, wnid in lines:
        if name not in by_name:
            raise _error(path, number, 1, f"labels `{name}`, which is not in {next(iter(by_name.values())).parent}")
        if wnid not in index:
            error = _error(path, number, column, f"class `{wnid}` of `{name}` is not a training class "
                           f"(train/ has {len(index)}: {_first(sorted(index))})")
            if wnid.isdigit():  # Caffe's val.txt numbers classes; a number's meaning depends on a class order
                error.hint = "classes are matched by name (the train/ folder or tar name), never by number"
            raise error
        if name in labels:
            raise _error(path, number, 1, f"`{name}` is labelled twice (first on line {first_line[name]})")
        labels[name], first_line[name] = index[wnid], number
    missing = [name for name in by_name if name not in labels]
    if missing:
        raise NetDslError(f"{len(missing)} of {len(by_name)} validation images have no label in {path} "
                          f"({_first(missing)})")
    return [(by_name[name], labels[name]) for name in by_name]


def _first(names: list[str], shown: int = 5) -> str:
    listed = ", ".join(names[:shown])
    return listed + (f", ... {len(names) - shown} more" if len(names) > shown else "")


def _error(path: Path, line: int, column: int, message: str) -> NetDslError:
    return NetDslError(message, Pos(str(path), line, column))
