"""The time model (netdsl/perf) against a measured GPU run, per kernel family.

    python benchmarks/model_check.py docs/gpu-runs/2026-12-04-tuned-h200.json [--device h200]

For every record of benchmarks/gpu_step.py's JSON (a net, a batch, a precision),
plans the same cuda step, predicts each launch on the device (registers and
shared memory from ptxas, as `netdsl time --predict` does) and sums the
predictions per kernel family beside the measured GPU milliseconds. The
measurement put a CUDA event pair around every launch, each waited for alone, so
every predicted launch is charged the host's issue time as well (Params.host_issue_us).
Needs no GPU; gpu_check.sh runs it after gpu_step.py.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netdsl import passes  # noqa: E402
from netdsl.compiler import compile_graph  # noqa: E402
from netdsl.perf import model, resources  # noqa: E402
from netdsl.perf.devices import device  # noqa: E402


def predicted_families(net: str, batch: int, precision: str, dev) -> dict[str, float]:
    g = compile_graph(ROOT / "examples" / f"{net}.net", overrides={"precision": precision}, training=True)
    plan = passes.plan_step(g, batch, "cuda", lambda logical: "gpu0")
    found, assumption = resources.plan_resources(plan, dev.arch)
    if assumption:
        print(f"  ({assumption})")
    totals: dict[str, float] = defaultdict(float)
    for cost in model.plan_costs(plan, dev, found):
        totals[model.family(cost.kernel)] += (cost.us + model.PARAMS.host_issue_us) / 1e3
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measured", type=Path)
    parser.add_argument("--device", default="h200")
    parser.add_argument("--top", type=int, default=8, help="families shown by name (the rest summed)")
    args = parser.parse_args()
    dev = device(args.device)
    for record in json.loads(args.measured.read_text()):
        measured = {fam: ms for fam, (ms, _) in record["families_ms"].items()}
        predicted = predicted_families(record["net"], record["batch"], record.get("precision", "fp32"), dev)
        print(f"== {record['net']} batch {record['batch']}, {record.get('precision', 'fp32')} matrix products, "
              f"{dev.name}: predicted / measured GPU ms per family")
        names = sorted(measured, key=lambda f: -measured[f])
        shown, rest = names[:args.top], names[args.top:]
        for fam in shown:
            p, m = predicted.get(fam, 0.0), measured[fam]
            print(f"  {fam:<36} {p:9.3f} {m:9.3f}  {p / m:5.2f}")
        p_rest = sum(predicted.get(f, 0.0) for f in rest) + sum(v for f, v in predicted.items() if f not in measured)
        m_rest = sum(measured[f] for f in rest)
        if rest:
            print(f"  {'other ' + str(len(rest)) + ' families':<36} {p_rest:9.3f} {m_rest:9.3f}  {p_rest / m_rest:5.2f}")
        p_all, m_all = sum(predicted.values()), sum(measured.values())
        print(f"  {'all launches':<36} {p_all:9.3f} {m_all:9.3f}  {p_all / m_all:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
