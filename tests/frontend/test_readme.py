"""The language reference (docs/language.md, linked from the README) documents
every layer kind with its arguments and every train setting, and the README's
Quickstart has exactly two commands."""
from __future__ import annotations

import re
from pathlib import Path

from netdsl.layers import REGISTRY
from netdsl.train import spec

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
LANGUAGE = (ROOT / "docs" / "language.md").read_text()


def test_every_kind_and_argument_is_documented():
    for kind, layer in REGISTRY.items():
        row = next((l for l in LANGUAGE.splitlines() if l.startswith(f"| `{kind}` |")), None)
        assert row is not None, f"docs/language.md has no row for layer kind {kind}"
        for arg in layer.args:
            assert f"`{arg.name}" in row, f"docs/language.md's {kind} row lacks argument {arg.name}"


def test_every_train_setting_is_documented():
    for key in spec.KEYS:
        assert f"`{key}`" in LANGUAGE
    for table in (spec.OPTIMIZERS, spec.SCHEDULES, spec.AUGMENTATIONS, spec.TEST_MODES):
        for name in table:
            assert f"`{name}" in LANGUAGE, name


def test_quickstart_has_two_commands():
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```\n(.*?)\n```", quickstart, re.S)
    assert len(commands) == 2 and all(c.startswith("pip install") for c in commands)


def test_readme_is_a_short_front_page_linking_existing_docs():
    assert len(README.splitlines()) < 250
    for link in re.findall(r"\]\((docs/[\w.-]+\.md)", README):
        assert (ROOT / link).is_file(), link
