"""`netdsl time FILE`: Caffe's `caffe time` for any network. Per layer, the
forward and backward milliseconds of one training step (medians over
`repeats` steps after a warm-up), then the whole step and images/s; with
`--torch`, the same for the network's PyTorch twin (torch_twin.py, weights
copied) side by side, and the ratio of the times.

Per-layer times come from the executor itself: the reference executor's
layer kinds are timed as it calls them, and the cpu executor times each of
its launches (`timed_step`, read in `planned_layer_times` only). A layer's time
is what was spent in it alone; the step time is measured whole, so it also
holds what falls between layers (gradient sums, the optimiser, Python)."""
from __future__ import annotations

import statistics
import time
from collections import defaultdict

import numpy as np

from ..errors import NetDslError
from ..graph_ops import image_input, label_input, layers as forward_layers
from ..layers import REGISTRY


def random_batch(net, batch: int, seed: int = 0):
    g = net.graph
    image = g.nodes[image_input(g)].shape
    classes = g.nodes[label_input(g)].shape[0]
    r = np.random.default_rng(seed)
    return r.standard_normal((batch, *image)).astype(np.float32), r.integers(0, classes, batch)


def reference_layer_times(ex, images, labels) -> dict[str, list[float]]:
    """node -> [forward s, backward s] over one step, timing each kind's numpy code as the executor calls it."""
    times = defaultdict(lambda: [0.0, 0.0])
    layers = list(REGISTRY.values())

    def timed(method, slot):
        def call(*args):
            started = time.perf_counter()
            result = method(*args)
            times[args[-1].stream][slot] += time.perf_counter() - started  # ctx, last argument, names the node
            return result
        return call

    for layer in layers:
        layer.forward, layer.backward = timed(layer.forward, 0), timed(layer.backward, 1)
    try:
        ex.step(images, labels)
    finally:
        for layer in layers:
            del layer.forward, layer.backward  # the class's methods again
    return dict(times)


def planned_layer_times(ex, images, labels) -> dict[str, list[float]]:
    """node -> [forward s, backward s] from a planned executor's own per-launch timing
    (each launch waited for on its own: on a GPU, launch latency is in each figure)."""
    times = defaultdict(lambda: [0.0, 0.0])
    for step, phase, seconds in ex.timed_step(images, labels):
        node = str(step.node).split(":", 1)[0]  # `x:backward`, `x:gradsum` count towards x
        if phase in ("forward", "backward"):
            times[node][phase == "backward"] += seconds
    return dict(times)


LAYER_TIMERS = {"reference": reference_layer_times, "cpu": planned_layer_times, "cuda": planned_layer_times}


def torch_layer_times(twin, images, labels) -> dict[str, list[float]]:
    """node -> [forward s, backward s] of one torch step. Backward: from the moment a node's output
    gradient is ready (a tensor hook) to the next such moment, as autograd runs one op at a time
    (on a GPU each stamp first waits for the device, so the figures are per layer too)."""
    times = defaultdict(lambda: [0.0, 0.0])
    stamps = []
    sync = twin.synchronize
    sync()
    last = [time.perf_counter()]

    def stamp(node) -> None:  # a hook that returns None leaves the gradient as it is
        sync()
        stamps.append((time.perf_counter(), node))

    def timer(node, tensor):
        sync()
        now = time.perf_counter()
        times[node][0] += now - last[0]
        last[0] = now
        if tensor.requires_grad:
            tensor.register_hook(lambda grad, node=node: stamp(node))

    loss = twin.forward(images, labels, train=True, timer=timer)
    loss.backward()
    sync()
    stamps.append((time.perf_counter(), None))
    for (t0, node), (t1, _) in zip(stamps, stamps[1:]):
        times[node][1] += t1 - t0
    for p in twin.parameters():
        p.grad = None
    return dict(times)


def median_times(samples: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    nodes = dict.fromkeys(n for s in samples for n in s)
    return {n: [statistics.median(s.get(n, [0.0, 0.0])[i] for s in samples) for i in (0, 1)] for n in nodes}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: page faults on fresh buffers, lazy initialisation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_netdsl(net, backend: str, batch: int, repeats: int):
    """(executor, per-layer medians or None, step seconds)."""
    ex = net.executor(backend=backend, batch=batch, seed=0)
    images, labels = random_batch(net, batch)
    step = median_seconds(lambda: ex.step(images, labels), repeats)
    timer = LAYER_TIMERS.get(ex.backend)
    layers = median_times([timer(ex, images, labels) for _ in range(repeats)]) if timer else None
    return ex, layers, step


def time_torch(net, params: dict, batch: int, repeats: int, device: str = "cpu"):
    """(per-layer medians, step seconds) of the twin on `device` ("cpu" or "cuda", PyTorch's
    defaults for each): forward, backward and an SGD update."""
    try:
        import torch
    except ImportError:
        raise NetDslError("--torch needs PyTorch", hint="pip install torch") from None
    from .torch_twin import TorchTwin
    twin = TorchTwin(net.graph, params, device)
    images, labels = (torch.from_numpy(a).to(device) for a in random_batch(net, batch))
    opt = net.train.optimizer.kwargs
    sgd = torch.optim.SGD(twin.parameters(), lr=opt["lr"], momentum=opt["momentum"],
                          weight_decay=opt["weight_decay"])

    def step():
        sgd.zero_grad(set_to_none=True)
        twin.forward(images, labels, train=True).backward()
        sgd.step()
        twin.synchronize()

    seconds = median_seconds(step, repeats)
    torch_layer_times(twin, images, labels)  # warm-up of the hooked path
    layers = median_times([torch_layer_times(twin, images, labels) for _ in range(repeats)])
    return layers, seconds


def report(net, backend: str, layers, step: float, batch: int, repeats: int, torch_layers=None,
           torch_step: float | None = None, torch_device: str = "cpu") -> str:
    g = net.graph
    rows = forward_layers(g)
    width = max(len("layer"), *(len(n) for n in rows))
    ms = lambda s: f"{s * 1e3:10.3f}"
    head = f"{'layer':<{width}}  {'kind':<12}  {'forward ms':>10}  {'backward ms':>11}"
    if torch_layers is not None:
        head += f"  {'torch fwd':>10}  {'torch bwd':>10}  {'netdsl/torch':>12}"
    lines = [f"network {net.name}, backend {backend}, batch {batch}: medians of {repeats} training steps "
             "after a warm-up", "", head, "-" * len(head)]
    totals = [0.0, 0.0, 0.0, 0.0]
    for node in rows:
        f, b = (layers or {}).get(node, [0.0, 0.0])
        line = f"{node:<{width}}  {g.nodes[node].kind:<12}  {ms(f)}  {ms(b):>11}"
        totals[0] += f
        totals[1] += b
        if torch_layers is not None:
            tf, tb = torch_layers.get(node, [0.0, 0.0])
            totals[2] += tf
            totals[3] += tb
            ratio = f"{(f + b) / (tf + tb):12.2f}" if tf + tb > 1e-6 and f + b > 1e-6 else f"{'-':>12}"
            line += f"  {ms(tf)}  {ms(tb)}  {ratio}"
        lines.append(line)
    lines.append("-" * len(head))
    total = f"{'sum over layers':<{width}}  {'':<12}  {ms(totals[0])}  {ms(totals[1]):>11}"
    if torch_layers is not None:
        total += f"  {ms(totals[2])}  {ms(totals[3])}  {(totals[0] + totals[1]) / (totals[2] + totals[3]):12.2f}"
    lines.append(total)
    if layers is None:
        lines.append(f"(the {backend} backend has no per-layer timing: only the whole step is measured)")
    lines.append("")
    lines.append(f"netdsl {backend}: {step * 1e3:.1f} ms per training step, {batch / step:,.1f} images/s")
    if torch_step is not None:
        where = f"{torch_threads()} threads" if torch_device == "cpu" else torch_device_name()
        lines.append(f"pytorch {torch_device}: {torch_step * 1e3:.1f} ms per training step, "
                     f"{batch / torch_step:,.1f} images/s ({where})")
        lines.append(f"netdsl/torch step time: {step / torch_step:.2f} (below 1: netdsl is faster)")
    return "\n".join(lines)


def torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def torch_device_name() -> str:
    import torch
    return torch.cuda.get_device_name()


def time_network(file: str, overrides: dict, backend: str, batch: int | None, repeats: int, with_torch: bool) -> str:
    import netdsl
    net = netdsl.load(file, overrides)
    batch = batch or net.train.batch
    ex, layers, step = time_netdsl(net, backend, batch, repeats)
    torch_layers = torch_step = None
    device = "cuda" if ex.backend == "cuda" else "cpu"  # the twin runs where netdsl ran
    if with_torch:
        torch_layers, torch_step = time_torch(net, dict(ex.params), batch, repeats, device)
    return report(net, ex.backend, layers, step, batch, repeats, torch_layers, torch_step, device)
