"""Ships the top-level grammar/ and templates/ inside the wheel.

The two directories stay at the top of the repository, where people edit
them, and the installed package needs them as netdsl/grammar and
netdsl/templates (read through netdsl.resources). Declarative setuptools
cannot map a top-level directory into a package without listing every
package by hand (package-dir), and symlinks in the tree break on checkouts
without symlink support and in sdists; so the build step copies them into
the build directory, from which the wheel is made. An editable install
builds nothing and netdsl.resources reads them from the checkout; an sdist
carries them through MANIFEST.in. Everything else is in pyproject.toml.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA_DIRS = ("grammar", "templates")


class build_py_with_data(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        for name in DATA_DIRS:
            self.copy_tree(name, str(Path(self.build_lib) / "netdsl" / name))


setup(cmdclass={"build_py": build_py_with_data})
