"""The `netdsl` command. Every user error is printed as `file:line:col:
message` with the source line, a caret and a hint, and exits with status 2."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from . import passes
from .compiler import compile_graph
from .errors import NetDslError, format_error


def parse_sets(items: list[str] | None) -> dict[str, str]:
    overrides = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise NetDslError(f"bad --set `{item}`", hint="write --set NAME=VALUE, for example --set act=tanh")
        overrides[name.strip()] = value.strip()
    return overrides


def dump_text(g) -> str:
    from .passes.infer_shapes import topological
    lines = []
    for name in topological(g):
        d = g.nodes[name]
        inputs = [u for u, _ in sorted(g.in_edges(name), key=lambda e: g.edges[e].get("slot", 0))]
        shape = "x".join(map(str, d["shape"])) if "shape" in d else "?"
        lines.append(f"{name:<28} {d.get('kind', '?'):<12} {d.get('device') or '-':<6} {shape:<12} <- {', '.join(inputs)}")
    return "\n".join(lines)


def cmd_info(args) -> int:
    from .report import info_text
    g = compile_graph(args.file, overrides=parse_sets(args.set))
    batch = args.batch or g.graph["train"].batch
    print(info_text(g, batch))
    return 0


def cmd_compile(args) -> int:
    from .export import graph_dot, graph_json
    known = ["build"] + passes.pass_names()
    if args.dump_after and args.dump_after not in known:
        raise NetDslError(f"--dump-after: unknown pass `{args.dump_after}`", hint=f"passes: {', '.join(known)}")

    def after(name, g):
        if name == args.dump_after:
            print(f"# graph after {name}")
            print(dump_text(g))

    g = compile_graph(args.file, overrides=parse_sets(args.set), after=after)
    out = Path(args.output or Path("out") / g.graph["network"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "graph.json").write_text(graph_json(g))
    (out / "graph.dot").write_text(graph_dot(g))
    written = ["graph.json", "graph.dot"]
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg", str(out / "graph.dot"), "-o", str(out / "graph.svg")], check=True)
        written.append("graph.svg")
    print(f"{args.file}: {g.number_of_nodes()} nodes; wrote {', '.join(written)} to {out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netdsl", description="Describe, compile and train AlexNet-family networks.")
    sub = p.add_subparsers(dest="command", required=True)

    def net_command(name, help_text, fn):
        c = sub.add_parser(name, help=help_text)
        c.add_argument("file", help="a .net file")
        c.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a param or train setting")
        c.set_defaults(fn=fn)
        return c

    c = net_command("info", "per-layer table and totals", cmd_info)
    c.add_argument("--batch", type=int, help="batch size for memory figures (default: the train block's)")
    c = net_command("compile", "check a network and write its graph", cmd_compile)
    c.add_argument("-o", "--output", metavar="DIR", help="output directory (default out/<network>)")
    c.add_argument("--dump-after", metavar="PASS", help="print the graph after this pass")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except NetDslError as err:
        print(format_error(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
