"""Compile a generated CUDA module to cubins with nvcc and read what ptxas
reports for each kernel: registers per thread, stack frame and spills.

A cubin is built for one architecture per nvcc call (`nvcc -cubin
-arch=sm_XX -Xptxas -v`); the calls for the architectures run side by side.
No GPU is needed, only nvcc. Registers decide occupancy (65,536 per SM on
sm_80 and sm_90), and a spill means a kernel went to local memory.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ARCHS = ("sm_80", "sm_90")


@dataclass(frozen=True)
class Resources:
    registers: int = 0
    stack: int = 0          # bytes of stack frame per thread
    spill_stores: int = 0   # bytes
    spill_loads: int = 0
    shared: int = 0         # bytes of static shared memory per block

    @property
    def spills(self) -> bool:
        return bool(self.spill_stores or self.spill_loads)


class NvccError(RuntimeError):
    """nvcc rejected a generated module: a code generator bug, never a user error."""


def available() -> bool:
    return shutil.which("nvcc") is not None


def parse_ptxas(log: str) -> dict[tuple[str, str], Resources]:
    """(kernel, arch) -> Resources, from the `-Xptxas -v` messages of one or more builds."""
    found: dict[tuple[str, str], dict[str, int]] = {}
    current = None
    for line in log.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)' for '(sm_\d+)'", line):
            current = found.setdefault(m.groups(), {})
        elif current is None:
            continue
        elif m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line):
            current.update(stack=int(m[1]), spill_stores=int(m[2]), spill_loads=int(m[3]))
        elif m := re.search(r"Used (\d+) registers", line):
            current["registers"] = int(m[1])
            if s := re.search(r"(\d+) bytes smem", line):
                current["shared"] = int(s[1])
    return {key: Resources(**values) for key, values in found.items()}


def compile_cubins(source: Path, out_dir: Path, archs=ARCHS, extra=("-Werror", "all-warnings")) -> dict[str, str]:
    """Build `out_dir/<stem>.<arch>.cubin` for each arch; returns arch -> ptxas' messages.
    Raises NvccError with nvcc's messages if any build fails."""
    out_dir.mkdir(parents=True, exist_ok=True)
    running = {}
    for arch in archs:
        command = ["nvcc", "-cubin", f"-arch={arch}", "-Xptxas", "-v", *extra, str(source),
                   "-o", str(out_dir / f"{source.stem}.{arch}.cubin")]
        running[arch] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs = {arch: process.communicate()[0] for arch, process in running.items()}
    failed = [arch for arch, process in running.items() if process.returncode != 0]
    if failed:
        raise NvccError(f"nvcc failed for {', '.join(failed)}:\n" + logs[failed[0]][-4000:])
    return logs


def resource_table(resources: dict[tuple[str, str], Resources], kernels: list[str], archs=ARCHS) -> str:
    """One row per kernel (in the order given): registers and spilled bytes per arch."""
    width = max([len(k) for k in kernels] + [6])
    head = f"{'kernel':<{width}}" + "".join(f"  {arch + ' regs':>12} {'spill B':>8}" for arch in archs)
    rows = [head, "-" * len(head)]
    for kernel in kernels:
        cells = []
        for arch in archs:
            r = resources.get((kernel, arch))
            cells.append(f"  {'-':>12} {'-':>8}" if r is None
                         else f"  {r.registers:>12} {r.spill_stores + r.spill_loads:>8}")
        rows.append(f"{kernel:<{width}}" + "".join(cells))
    return "\n".join(rows)


def resource_summary(resources: dict[tuple[str, str], Resources], archs=ARCHS) -> str:
    lines = []
    for arch in archs:
        mine = {k: r for (k, a), r in resources.items() if a == arch}
        if not mine:
            continue
        top = max(mine, key=lambda k: mine[k].registers)
        spilled = sorted(k for k, r in mine.items() if r.spills)
        lines.append(f"{arch}: {len(mine)} kernels, most registers {mine[top].registers} ({top}), "
                     + (f"{len(spilled)} spill: {', '.join(spilled)}" if spilled else "no spills"))
    return "\n".join(lines)
