"""The grammar and the Jinja templates, from a checkout or an installed wheel.

They live at the top of the repository (`grammar/`, `templates/`), where
people edit them. The wheel carries them inside the package as
`netdsl/grammar/` and `netdsl/templates/` (setup.py copies them in at build
time), so an installed netdsl finds them beside its modules and a checkout
(an editable install, or the tests run from the tree) finds them one level up.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def data_dir(name: str) -> Path:
    """The directory `name` ("grammar" or "templates") as a real directory.

    jinja2.FileSystemLoader needs a filesystem path; netdsl is installed as
    plain files (pip never installs a wheel zipped), so the package's
    importlib.resources root is one.
    """
    package = files(__package__)
    if not isinstance(package, Path):
        raise RuntimeError(f"netdsl is imported from {package}, not from files on disk: install it with pip")
    for candidate in (package / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"netdsl's {name}/ is neither in the installed package ({package / name}) nor in a checkout "
        f"({package.parent / name}); reinstall netdsl")


def grammar_path() -> Path:
    return data_dir("grammar") / "netdsl.lark"


def templates_dir() -> Path:
    return data_dir("templates")
