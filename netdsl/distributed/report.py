"""What `netdsl info --ranks N` adds: the data-parallel layout over the towers and the
gradient bytes each rank sends into the sum every step."""
from __future__ import annotations

from collections import defaultdict

from ..report import human_bytes
from .buckets import DEFAULT_CAP


def ranks_text(plan, ranks: int, batch: int) -> str:
    """`plan` is one rank's training step (at the local batch `batch`)."""
    by_device: dict[str, int] = defaultdict(int)
    for ref in plan.param_grads.values():
        info = plan.tensors[ref]
        by_device[info.device] += info.nbytes
    total = sum(by_device.values())
    devices = sorted(by_device)
    ring = 2 * (ranks - 1) / ranks * total
    out = [f"data parallel over {ranks} ranks: batch {batch} per rank, global batch {batch * ranks}",
           f"  each rank runs every logical device ({', '.join(devices)}): the towers split a rank's"
           " model, the ranks split the batch",
           f"  with --devices D (one rank's GPUs), the k-th rank on a host uses D + k x (max(D) + 1)"]
    for device in devices:
        out.append(f"  gradients on {device:<6} {by_device[device]:>14,} bytes per step, averaged with the same"
                   f" device of the other ranks")
    out += [f"gradient bytes/step/rank {total:,} ({human_bytes(total)}) into the sum, in buckets of"
            f" {human_bytes(DEFAULT_CAP)}",
            f"  a ring allreduce sends and receives 2(N-1)/N of that per rank: {human_bytes(ring)} each way"]
    return "\n".join(out)
