"""Mutations of the example files and random token soups: every input gives a
checked graph or a NetDslError, never another exception."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdsl.compiler import compile_graph
from netdsl.errors import NetDslError, format_error

EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.net"))
TOKENS = ["conv", "fc", "relu", "all", "tower", "on", "gpu0", "gpu1", "(", ")", "{", "}", "[", "]", "->", "=", ",",
          ";", ":", "x", "1", "0", "-3", "2.5", "1e-4", "image", "label", "input", "param", "train", "defaults",
          "classes", "maxpool", "lrn", "dropout", "softmax_loss", "concat", "transfer", "\n", " ", "#", "network",
          "size=", "stride=", "pad=", "true", "batch", "\"s\"", "@", "size=99", "block", "*", "/", "+", "-",
          "block b(a, w) {", "b(8)", "2 * w"]


def compiles_or_reports(text: str) -> None:
    try:
        compile_graph(text=text, file="fuzz.net")
    except NetDslError as err:
        assert format_error(err).count("error:") == 1


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(text) + 1)
        j = min(len(text), i + rng.randint(0, 12))
        choice = rng.random()
        if choice < 0.3:
            text = text[:i] + text[j:]
        elif choice < 0.7:
            text = text[:i] + rng.choice(TOKENS) + text[i:]
        elif choice < 0.85:
            text = text[:i] + rng.choice(TOKENS) + text[j:]
        else:
            text = text[:i] + text[j:j + 8] + text[i:]
    return text


# The fast loop mutates the paper's nets and the small ones; the larger new examples
# (a few seconds each) run with the slow tests.
LARGE = ("resnet18", "resnet20", "vgg16", "zfnet", "nin", "resnet50", "mobilenet_v2", "googlenet", "se_resnet")


@pytest.mark.parametrize("example", [pytest.param(e, marks=pytest.mark.slow) if e.name.startswith(LARGE) else e
                                     for e in EXAMPLES], ids=lambda p: p.name)
def test_mutated_examples(example):
    rng = random.Random(example.name)
    text = example.read_text()
    count = 1500 if "alexnet" not in example.name else 400
    outcomes = {"graph": 0, "error": 0}
    for _ in range(count):
        mutant = mutate(text, rng)
        try:
            compile_graph(text=mutant, file="fuzz.net")
            outcomes["graph"] += 1
        except NetDslError:
            outcomes["error"] += 1
    # both outcomes occur, so the mutations are neither all fatal nor all harmless
    assert outcomes["graph"] > 0 and outcomes["error"] > 0, outcomes


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_token_soup(text):
    compiles_or_reports(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text(text):
    compiles_or_reports(text)
