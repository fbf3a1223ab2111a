"""Where the ILSVRC-2012 label and name files are looked for, and the devkit's
class table: ILSVRC2012_ID -> (WNID, human name).

The devkit ships it as data/meta.mat, a MATLAB file. It is read with
scipy.io.loadmat when scipy is installed; scipy is not a dependency of netdsl
for one file, so a plain text export is accepted too: meta.txt (or
ILSVRC2012_mapping.txt, the name it often goes by), one `ILSVRC2012_ID WNID
[human name]` line per class, e.g. `1 n02119789 kit fox, Vulpes macrotis`.
"""

from __future__ import annotations

from pathlib import Path

from netdsl.errors import NetDslError, Pos

META_FILES = ("meta.mat", "meta.txt", "ILSVRC2012_mapping.txt")
DEVKIT_DATA = Path("ILSVRC2012_devkit_t12") / "data"


def label_dirs(root: Path) -> list[Path]:
    """Where label and class-name files are looked for, in order: the dataset folder,
    its val/, and the devkit's data folder unpacked inside it."""
    return [root, root / "val", root / DEVKIT_DATA]


def find(root: Path, names) -> Path | None:
    """The first of `names` present in the label folders (each folder in turn)."""
    return next((d / n for d in label_dirs(root) for n in names if (d / n).is_file()), None)


def find_meta(root: Path) -> Path | None:
    """meta.mat where scipy can read it, else a text export, else meta.mat (read_meta says why not)."""
    mat = find(root, ("meta.mat",))
    text = find(root, META_FILES[1:])
    if mat is not None and (text is None or _has_scipy()):
        return mat
    return text or mat


def read_meta(path: Path) -> dict[int, tuple[str, str]]:
    if path.suffix == ".mat":
        return _read_mat(path)
    table = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            parts = line.split(maxsplit=2)
            if not parts:
                continue
            if len(parts) < 2 or not parts[0].isdigit():
                raise NetDslError("expected `ILSVRC2012_ID WNID [human name]`", Pos(str(path), number, 1))
            table[int(parts[0])] = (parts[1], parts[2].strip() if len(parts) == 3 else parts[1])
    return table


def _read_mat(path: Path) -> dict[int, tuple[str, str]]:
    if not _has_scipy():
        raise NetDslError(f"{path} is a MATLAB file, and reading it needs scipy",
                          hint="pip install scipy, or export it as meta.txt: `ILSVRC2012_ID WNID` per line")
    from scipy.io import loadmat
    try:
        synsets = loadmat(str(path), squeeze_me=True)["synsets"]
        return {int(s["ILSVRC2012_ID"]): (str(s["WNID"]), str(s["words"])) for s in synsets.ravel()}
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise NetDslError(f"{path} is not the devkit's meta.mat (a `synsets` table with ILSVRC2012_ID, "
                          f"WNID and words): {exc}") from None


def readable(path: Path) -> bool:
    """Whether read_meta can read `path` here (a .mat file needs scipy)."""
    return path.suffix != ".mat" or _has_scipy()


def _has_scipy() -> bool:
    try:
        import scipy.io  # noqa: F401
    except ImportError:
        return False
    return True
