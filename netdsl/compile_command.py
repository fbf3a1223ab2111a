"""`netdsl compile`: the checked graph (graph.json, graph.dot, graph.svg when Graphviz is
installed) and, with --target, each target's kernels, plan and memory plan; --dump-after
prints the graph or plan after any pass. Every file is written whole (userpaths.write_whole)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from . import passes
from .compiler import compile_graph
from .errors import NetDslError
from .graph_ops import forward_nodes
from .options import parse_sets
from .userpaths import check_out_dir, write_whole


def dump_text(g) -> str:
    from .graph_ops import topological
    lines = []
    for name in topological(g):
        d = g.nodes[name]
        inputs = [u for u, _ in sorted(g.in_edges(name), key=lambda e: g.edges[e].get("slot") or 0)]
        shape = "x".join(map(str, d.shape)) if d.shape is not None else "?"
        lines.append(f"{name:<28} {d.kind or '?':<12} {d.device or '-':<6} {shape:<12} <- {', '.join(inputs)}")
    return "\n".join(lines)


def plan_text(plan) -> str:
    """One line per step of a Plan: what runs, on which stream, reading and writing what."""
    lines = []
    for i, step in enumerate(plan.steps):
        what = getattr(step, "kernel", None)
        name = what.name if what else f"copy {step.src_device}->{step.device}"
        sync = plan.sync.get(i)
        waits = f" waits {list(sync.waits)}" if sync and sync.waits else ""
        reads = ", ".join(sorted(map(str, step.reads)))
        writes = ", ".join(sorted(map(str, step.writes)))
        lines.append(f"{i:>4} {step.device:<6} {name:<44} {writes} <- {reads}{waits}")
    return "\n".join(lines)


KERNEL_FILES = {"c": "kernels.c", "cuda": "kernels.cu"}
# Where each target's plan places the logical devices: what `netdsl train --backend cpu`
# and `--backend cuda --devices 0,1` allocate.
PLACEMENTS = {"c": ("the cpu backend: every logical device on the host", lambda device: "host"),
              "cuda": ("the cuda backend: a GPU per logical device", lambda device: device)}


def _write_plan(g, out: Path, targets: list[str], batch: int, after=None) -> list[str]:
    """kernels.c / kernels.cu, plan.json and memory.json; prints what they hold."""
    import json

    from .codegen import nvcc, render_module
    from .plan_report import memory_json, memory_table, plan_json
    written, kernels = [], {}
    for target in targets:
        where, placement = PLACEMENTS[target]
        plan = passes.plan_step(g, batch, target, placement, after=after)
        kernels[target] = list(dict.fromkeys(k.name for m in plan.modules for k in m.kernels if k.shape != "gemm"))
        write_whole(out / KERNEL_FILES[target], render_module(plan.modules, target))
        suffix = "" if len(targets) == 1 else f".{target}"
        write_whole(out / f"plan{suffix}.json", json.dumps(plan_json(plan), indent=1))
        write_whole(out / f"memory{suffix}.json", json.dumps(memory_json(plan), indent=1))
        written += [KERNEL_FILES[target], f"plan{suffix}.json", f"memory{suffix}.json"]
        layers = sum(1 for _, d in g.nodes(data=True) if d.is_layer)
        print(f"{target}: {plan.kernel_count} kernels from {len(plan.modules)} distinct bodies for "
              f"{layers} layers in {KERNEL_FILES[target]}; {len(plan.steps)} steps; "
              f"{plan.precision} matrix products")
        print(memory_table(plan, where))
    if "cuda" in targets:
        if not nvcc.available():
            print("nvcc not on PATH: no cubins built")
        else:
            logs = nvcc.compile_cubins(out / KERNEL_FILES["cuda"], out)
            written += [f"kernels.{arch}.cubin" for arch in logs]
            found = nvcc.parse_ptxas("\n".join(logs.values()))
            names = kernels["cuda"] + sorted({k for k, _ in found} - set(kernels["cuda"]))
            print(nvcc.resource_table(found, names))
            print(nvcc.resource_summary(found))
    return written


def cmd_compile(args) -> int:
    from .export import graph_dot, graph_json
    known = ["build"] + passes.pass_names()
    if args.dump_after and args.dump_after not in known:
        raise NetDslError(f"--dump-after: unknown pass `{args.dump_after}`", hint=f"passes: {', '.join(known)}")
    forward_only = ["build"] + [name for name, _ in passes.FORWARD_PASSES]
    training = bool(args.target) or (args.dump_after is not None and args.dump_after not in forward_only)
    plan_passes = ["lower"] + [name for name, _ in passes.PLAN_PASSES]
    if args.dump_after in plan_passes and not args.target:
        raise NetDslError(f"--dump-after {args.dump_after}: a pass of the plan needs a target",
                          hint="add --target c or --target cuda")
    if args.output:
        check_out_dir(args.output, run=False)

    def after(name, g):
        if name == args.dump_after:
            print(f"# {'plan' if name in plan_passes else 'graph'} after {name}")
            print(plan_text(g) if name in plan_passes else dump_text(g))

    g = compile_graph(args.file, overrides=parse_sets(args.set), after=after, training=training)
    out = Path(args.output or Path("out") / g.graph["network"])
    out.mkdir(parents=True, exist_ok=True)
    forward = g.subgraph(forward_nodes(g))
    write_whole(out / "graph.json", graph_json(forward))
    write_whole(out / "graph.dot", graph_dot(forward))
    written = ["graph.json", "graph.dot"]
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg", str(out / "graph.dot"), "-o", str(out / "graph.svg")], check=True)
        written.append("graph.svg")
    if args.target:
        from .codegen.nvcc import NvccError
        try:
            targets = ["c", "cuda"] if args.target == "all" else [args.target]
            written += _write_plan(g, out, targets, args.batch or g.graph["train"].batch, after)
        except NvccError as exc:
            print(f"{args.file}: the generated CUDA does not compile (a netdsl bug): {exc}", file=sys.stderr)
            return 1
    print(f"{args.file}: {g.number_of_nodes()} nodes; wrote {', '.join(written)} to {out}/")
    return 0
