"""Every command shown in a code block of the README, and of the docs pages the
README's long sections moved to, is checked here; a new example without a
check fails `test_every_command_example_has_a_check`.

How each is checked (CHECKS below): `run` runs it as written; `parse` parses
it with netdsl's own argument parser (every option exists and takes that
value) and runs something smaller that exercises the same path, named in the
test; `slow` runs it as written in a test marked slow. The quoted outputs
(the Quickstart's epochs, `netdsl info`'s table, the error example) are
compared with what the command prints."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from netdsl.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md"] + [f"docs/{n}.md" for n in ("commands", "checks", "language", "training", "internals", "benchmarks")]
COMMAND = re.compile(r"^(pip install |netdsl |python -m pytest|mpiexec )")

QUICKSTART = "pip install -e . && netdsl train examples/cifar.net --batch 32"
TESTS = 'pip install -e ".[test,oracle,mpi]" && python -m pytest -q -ra'
CHECKS = {
    QUICKSTART: "slow: test_quickstart_prints_what_the_readme_quotes",
    TESTS: "parse: test_the_test_command_is_what_ci_runs",
    'python -m pytest -q -m "not slow"': "parse: test_the_test_command_is_what_ci_runs",
    "netdsl train examples/alexnet.net --data DIR --set classes=10 --out runs/mine": "parse: test_own_images_commands",
    "netdsl test --checkpoint runs/mine/best.npz --data DIR": "parse: test_own_images_commands",
    "netdsl train examples/alexnet.net --epochs 1 --set schedule.warmup=20 --set clip=2":
        "parse: test_alexnet_first_run_settings_compile",
}


def command_lines() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = (ROOT / page).read_text()
        for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
            found += [(page, line.strip()) for line in block.splitlines() if COMMAND.match(line.strip())]
    return found


def netdsl_argv(line: str) -> list[str]:
    """The netdsl part of a command line, as argv (after `pip install ... &&`)."""
    part = line.split("&&")[-1].strip()
    words = shlex.split(part)
    assert words[0] == "netdsl", line
    return words[1:]


def test_every_command_example_has_a_check():
    lines = command_lines()
    assert len(lines) >= len(CHECKS)
    for page, line in lines:
        assert line in CHECKS, f"{page}: `{line}` is shown but not checked; add it to CHECKS"


def test_every_netdsl_example_parses():
    parser = build_parser()
    for _, line in command_lines():
        if "netdsl " in line:
            parser.parse_args(netdsl_argv(line))  # exits (SystemExit) on an unknown option or bad value


def test_the_test_command_is_what_ci_runs():
    """The README's test command is the one .ci/run runs (extras and pytest arguments),
    its extras exist, and the fast loop's marker is registered."""
    ci = (ROOT / ".ci" / "run").read_text()
    install, run = TESTS.split(" && ")
    extras = re.search(r'"\.\[(.*?)\]"', install).group(1)
    assert f'-e ".[{extras}]"' in ci and f"\n{run}\n" in ci
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras.split(",")) <= declared.keys()
    assert "slow:" in (ROOT / "pyproject.toml").read_text()


def test_alexnet_first_run_settings_compile(capsys):
    """docs/training.md's AlexNet line; a full epoch is minutes on a CPU, so the
    network with its two settings is compiled (`info`) instead."""
    argv = netdsl_argv("netdsl train examples/alexnet.net --epochs 1 --set schedule.warmup=20 --set clip=2")
    sets = [w for i, w in enumerate(argv) if i and argv[i - 1] == "--set"]
    assert main(["info", str(ROOT / "examples" / "alexnet.net")] + [a for s in sets for a in ("--set", s)]) == 0
    assert "60,965,224" in capsys.readouterr().out


def test_own_images_commands(tmp_path, monkeypatch, capsys):
    """The README's two lines for one's own images, with examples/lenet.net in
    place of AlexNet (an AlexNet epoch is minutes on a CPU) on a tiny folder of
    the same layout: train writes runs/mine/best.npz, test reads it."""
    from netdsl.data.synthetic import make_shapes
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    data = make_shapes(tmp_path / "DIR", classes=10, train_per_class=2, val_per_class=1, size=36, seed=1)
    train, test = (netdsl_argv(l) for l in CHECKS if l.startswith(("netdsl train examples/alexnet.net --data",
                                                                    "netdsl test --checkpoint runs/mine")))
    # AlexNet takes the folder's class count from --set classes=N; lenet.net already has 10 outputs.
    i = train.index("--set")
    assert train[i + 1] == "classes=10"
    assert main(["info", str(ROOT / "examples" / "alexnet.net"), *train[i:i + 2]]) == 0
    assert re.search(r"^fc8 +fc +gpu0 +10 ", capsys.readouterr().out, re.M)
    del train[i:i + 2]
    train = [str(ROOT / "examples" / "lenet.net") if w == "examples/alexnet.net" else str(data) if w == "DIR" else w
             for w in train] + ["--epochs", "1", "--batch", "10", "--backend", "reference", "--no-progress"]
    assert main(train) == 0
    assert (tmp_path / "runs" / "mine" / "best.npz").is_file()
    test = [str(data) if w == "DIR" else w for w in test] + ["--backend", "reference"]
    assert main(test) == 0
    assert "top-1" in capsys.readouterr().out


def test_the_papers_ablations_are_each_one_set(capsys):
    """Every `--set` the README names for the paper's ablations reaches examples/alexnet.net."""
    readme = (ROOT / "README.md").read_text()
    sets = re.findall(r"`--set ([\w.]+=[\w.]+)`", readme.split("The paper's\nablations", 1)[1].split("\n\n")[0])
    assert len(sets) >= 4
    for item in sets:
        assert main(["info", str(ROOT / "examples" / "alexnet.net"), "--set", item]) == 0, item
        assert "60,965,224" in capsys.readouterr().out  # none of them changes a parameter count


def test_info_output_quoted_in_the_docs(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["info", "examples/alexnet.net"]) == 0
    out = capsys.readouterr().out.splitlines()
    doc = (ROOT / "docs" / "commands.md").read_text()
    quoted = doc.split("```\nnetwork alexnet", 1)[1].split("```", 1)[0]
    lines = ("network alexnet" + quoted).splitlines()
    assert len(lines) > 30
    for line in lines:
        if line.strip() != "...":
            assert line in out, f"docs/commands.md quotes a line `netdsl info` no longer prints: {line!r}"


def test_error_example_quoted_in_the_docs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("bad.net").write_text("input image : 3 x 8 x 8\ninput label : 2 classes\nc1 = conv(image, 8, size=3, strde=2)\n"
                               "s = fc(c1, 2)\nloss = softmax_loss(s, label)\n")
    assert main(["info", "bad.net"]) == 2
    err = capsys.readouterr().err.strip()
    for page in ("docs/checks.md", "docs/commands.md"):
        text = (ROOT / page).read_text()
        quoted = text.split("```\nbad.net:", 1)[1].split("```", 1)[0]
        assert ("bad.net:" + quoted).strip() == err, page


@pytest.mark.slow
def test_quickstart_prints_what_the_readme_quotes(tmp_path):
    """The Quickstart's train command as written (the install part aside: the
    tests run in the installed tree), in a fresh cache; the README's quoted
    epoch lines, up to the images/s they leave out, are what it prints."""
    argv = [str(ROOT / w) if w.startswith("examples/") else w for w in netdsl_argv(QUICKSTART)]
    env = dict(os.environ, NETDSL_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "netdsl", *argv, "--no-progress"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stderr
    said = run.stdout + run.stderr  # the setup lines go to stderr, the epochs to stdout
    if "backend: cpu" not in said:
        pytest.skip("the quoted figures are the cpu backend's; this machine picked another")
    printed = said.splitlines()
    for page in ("README.md", "docs/training.md"):
        text = (ROOT / page).read_text()
        # each quoted epoch up to its top-5 error (the images/s vary from run to run)
        quoted = re.findall(r"^    (epoch \d+: train loss .*?top-5 [\d.]+%)", text, re.M)
        assert len(quoted) >= 2, page
        for line in quoted:
            assert any(l.startswith(line + ",") for l in printed), f"{page}: {line}"
    done = "done: 30 epoch(s); validation top-1 error 15.00%, top-5 0.00%"
    assert done in (ROOT / "docs" / "training.md").read_text() and any(l.startswith(done) for l in printed)
