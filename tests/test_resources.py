"""The grammar and templates are found in a checkout and in an installed package."""
from __future__ import annotations

from pathlib import Path

import pytest

from netdsl import resources

ROOT = Path(__file__).resolve().parents[1]


def test_a_checkout_reads_the_top_level_directories():
    assert resources.grammar_path() == ROOT / "grammar" / "netdsl.lark"
    assert resources.templates_dir() == ROOT / "templates"
    assert (resources.templates_dir() / "conv.j2").is_file()


def test_an_installed_package_reads_its_own_copies(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "netdsl"
    for name in ("grammar", "templates"):
        (package / name).mkdir(parents=True)
    monkeypatch.setattr(resources, "files", lambda _: package)
    assert resources.grammar_path() == package / "grammar" / "netdsl.lark"
    assert resources.templates_dir() == package / "templates"


def test_a_missing_directory_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "files", lambda _: tmp_path / "netdsl")
    with pytest.raises(FileNotFoundError, match="reinstall netdsl"):
        resources.data_dir("grammar")
