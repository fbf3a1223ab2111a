"""A PyTorch twin of any netdsl network, built from the graph: one small
function per layer kind (TORCH_OPS) maps a node's data (kind, args) onto
torch.nn.functional, the nodes run in the graph's own topological order, and
the weights are the executor's (same names, PyTorch layouts). Used by
`netdsl time --torch` to compare speed on the user's own topology; tests
check its logits against the reference executor's.

netdsl's LRN alpha is not divided by the window, torch's is: alpha * size
here. torch's window over channels (size // 2 below, (size - 1) // 2 above)
is netdsl's for odd and even sizes alike."""
from __future__ import annotations

from ..errors import NetDslError
from ..graph_ops import image_input, label_input, layers, loss_node, loss_weights, ordered_inputs


def _ops():
    import torch
    F = torch.nn.functional

    def pair(value):  # an int, an [h, w] pair (a tuple for torch) or a word such as "same"
        return tuple(value) if isinstance(value, (list, tuple)) else value

    def pool_args(a):
        return dict(kernel_size=a["size"], stride=a.get("stride") or a["size"], padding=a["pad"],
                    ceil_mode=bool(a.get("ceil")))

    def lrn(a, p, xs, train):
        x = xs[0]
        if a.get("region") == "within":  # the sum over size x size pixels, zeros past the edges
            n = a["size"]
            sums = F.avg_pool2d(x * x, n, stride=1, padding=n // 2, count_include_pad=True) * (n * n)
            return x / (a["k"] + a["alpha"] * sums) ** a["beta"]
        return F.local_response_norm(x, a["size"], alpha=a["alpha"] * a["size"], beta=a["beta"], k=a["k"])

    def batchnorm(a, p, xs, train, state):
        return F.batch_norm(xs[0], state["running_mean"], state["running_var"], p.get("weight"), p.get("bias"),
                            training=train, momentum=a["momentum"], eps=a["eps"])

    return {
        "add": lambda a, p, xs, train: sum(xs[1:], xs[0]),
        "identity": lambda a, p, xs, train: xs[0],
        "leaky_relu": lambda a, p, xs, train: F.leaky_relu(xs[0], a["slope"]),
        "elu": lambda a, p, xs, train: F.elu(xs[0], a["alpha"]),
        "prelu": lambda a, p, xs, train: F.prelu(xs[0], p["weight"]),
        "flatten": lambda a, p, xs, train: xs[0].flatten(1),
        "global_avgpool": lambda a, p, xs, train: F.adaptive_avg_pool2d(xs[0], 1),
        "batchnorm": batchnorm,
        "conv": lambda a, p, xs, train: F.conv2d(xs[0], p["weight"], p.get("bias"), stride=pair(a["stride"]),
                                                 padding=pair(a["pad"]), dilation=pair(a.get("dilation", 1)),
                                                 groups=a.get("groups", 1)),
        "fc": lambda a, p, xs, train: F.linear(xs[0].flatten(1), p["weight"], p.get("bias")),
        "relu": lambda a, p, xs, train: F.relu(xs[0]),
        "tanh": lambda a, p, xs, train: torch.tanh(xs[0]),
        "sigmoid": lambda a, p, xs, train: torch.sigmoid(xs[0]),
        "lrn": lrn,
        "maxpool": lambda a, p, xs, train: F.max_pool2d(xs[0], **pool_args(a)),
        "avgpool": lambda a, p, xs, train: F.avg_pool2d(xs[0], count_include_pad=False, **pool_args(a)),
        "dropout": lambda a, p, xs, train: F.dropout(xs[0], a["rate"], training=train),  # torch's own masks
        "transfer": lambda a, p, xs, train: xs[0],
        "concat": lambda a, p, xs, train: torch.cat(xs, dim=1),
        "softmax_loss": lambda a, p, xs, train: F.cross_entropy(xs[0], xs[1]),
    }


class TorchTwin:
    """forward(images, labels=None, train=False, timer=None) -> scores, or the loss given labels.
    `timer(node, tensor)` is called after each node, for per-layer timing."""

    def __init__(self, g, params: dict, device: str = "cpu"):
        import torch
        self.torch, self.g, self.ops, self.device = torch, g, _ops(), device
        self.order = layers(g)
        self.inputs = {n: ordered_inputs(g, n) for n in self.order}
        for node in self.order:
            if g.nodes[node].kind not in self.ops:
                raise NetDslError(f"`{node}`: layer kind {g.nodes[node].kind} has no PyTorch twin",
                                  hint="add one to netdsl/inspect/torch_twin.py")
        self.loss = loss_node(g)
        self.losses = loss_weights(g)  # the value with labels: their weighted sum
        self.scores = ordered_inputs(g, self.loss)[0]
        self.image = image_input(g)
        self.label = label_input(g)
        self.params = {k: torch.nn.Parameter(torch.from_numpy(v.copy()).to(device)) for k, v in params.items()}
        self.node_params = {n: {p: self.params[f"{n}.{p}"] for p in g.nodes[n].params} for n in self.order}
        self.node_state = {n: self._state(n) for n in self.order}  # running statistics, torch's own

    def _state(self, node: str) -> dict:
        from ..layers import REGISTRY
        d = self.g.nodes[node]
        layer = REGISTRY[d.kind]
        shapes = layer.state_shapes(d.args, [tuple(self.g.nodes[u].shape) for u in self.inputs[node]])
        return {s: self.torch.full(shape, float(layer.state_init(d.args, s)), device=self.device)
                for s, shape in shapes.items()}

    def parameters(self):
        return list(self.params.values())

    def synchronize(self) -> None:
        """Wait for the device (a no-op on the CPU): timings read the host clock."""
        if self.device != "cpu":
            self.torch.cuda.synchronize()

    def forward(self, images, labels=None, train: bool = False, timer=None):
        values = {self.image: images}
        if labels is not None:
            values[self.label] = labels
        for node in self.order:
            if node in self.losses and labels is None:
                continue
            d = self.g.nodes[node]
            state = (self.node_state[node],) if self.node_state[node] else ()
            values[node] = self.ops[d.kind](d.args, self.node_params[node],
                                               [values[u] for u in self.inputs[node]], train, *state)
            if timer is not None:
                timer(node, values[node])
        if labels is None:
            return values[self.scores]
        return sum(values[n] * w for n, w in self.losses.items()) if len(self.losses) > 1 else values[self.loss]
