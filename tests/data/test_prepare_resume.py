"""prepare killed (SIGKILL, every process of it) at random moments and run again
until it finishes gives the same cache, byte for byte, as one uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from netdsl.data.folder import DataWarning
from netdsl.data.prepare import prepare

# Each run in a process of its own, with small chunks saved at once and a slowed
# decoder (1.4 s of decoding in all), killed at a random moment up to 0.6 s after
# its imports, so that kills land before, inside and between chunks and splits.
RUN = """
import importlib, sys, time
p = importlib.import_module("netdsl.data.prepare")  # netdsl.data.prepare is also the function's name
split = importlib.import_module("netdsl.data.decode_split")
progress = importlib.import_module("netdsl.data.prepare_progress")
split.CHUNK, progress.SAVE_EVERY = 3, 0.0
decode = split.decode_square
split.decode_square = lambda *a: (time.sleep(0.02 * int(sys.argv[3])), decode(*a))[1]
print('ready', flush=True)  # the kill's clock starts here, after the imports
p.prepare(sys.argv[1], size=16, cache_dir=sys.argv[2], workers=int(sys.argv[3]), progress=False)
"""


def cache_files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_killed_at_random_moments_finishes_with_an_identical_cache(make_dataset, tmp_path, workers):
    root = make_dataset({"ant": 25, "bee": 20, "cow": 25}, {"ant": 6, "bee": 6, "cow": 7})
    (root / "train" / "bee" / "broken.png").write_bytes(b"not an image")  # failed rows are dropped on resume too
    with pytest.warns(DataWarning, match="broken.png"):
        whole = prepare(root, size=16, cache_dir=tmp_path / "whole", workers=1, progress=False)
    target = tmp_path / "killed"
    draw = random.Random(workers)
    kills, resumed_builds = 0, 0
    for attempt in range(60):
        resumed_builds += any(target.parent.glob(".killed.building-*/*.progress.npz"))
        with subprocess.Popen([sys.executable, "-c", RUN, str(root), str(target), str(workers)],
                              start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            process.stdout.readline()
            time.sleep(draw.uniform(0.0, 0.6))
            if process.poll() is not None:
                assert process.wait() == 0, process.stderr.read().decode()
                break
            os.killpg(process.pid, signal.SIGKILL)  # the workers too, as a kill of the job would
        kills += 1
    else:
        pytest.fail("prepare never finished in 60 runs")
    assert kills >= 2 and resumed_builds >= 1, (kills, resumed_builds)
    assert cache_files(target) == cache_files(whole.cache_dir)
    assert not list(target.parent.glob(".killed.*"))  # the build was renamed into place, nothing left over
