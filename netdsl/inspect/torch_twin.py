"""A PyTorch twin of any netdsl network, built from the graph: each node runs
its kind's own `torch_forward` (declared beside the kind's numpy reference in
netdsl/layers/), the nodes run in the graph's own topological order, and the
weights are the executor's (same names, PyTorch layouts). Used by `netdsl
time --torch` to compare speed on the user's own topology; tests check its
logits against the reference executor's."""
from __future__ import annotations

from ..errors import NetDslError
from ..graph_ops import image_input, label_input, layers, loss_node, loss_weights, ordered_inputs, output_node


class TorchTwin:
    """forward(images, labels=None, train=False, timer=None) -> scores, or the loss given labels.
    `timer(node, tensor)` is called after each node, for per-layer timing."""

    def __init__(self, g, params: dict, device: str = "cpu"):
        import torch

        from ..layers import REGISTRY
        self.torch, self.g, self.device = torch, g, device
        self.order = layers(g)
        self.inputs = {n: ordered_inputs(g, n) for n in self.order}
        self.layers = {n: REGISTRY[g.nodes[n].kind] for n in self.order}
        for node, layer in self.layers.items():
            if not layer.has_torch_twin():
                raise NetDslError(f"`{node}`: layer kind {layer.kind} has no PyTorch twin",
                                  hint=f"give netdsl/layers/{layer.kind}.py a torch_forward")
        self.loss = loss_node(g)
        self.losses = loss_weights(g)  # the value with labels: their weighted sum
        self.scores = output_node(g)  # the main loss's scores, or a loss-free network's final tensor
        self.image = image_input(g)
        self.label = label_input(g)
        self.params = {k: torch.nn.Parameter(torch.from_numpy(v.copy()).to(device)) for k, v in params.items()}
        self.node_params = {n: {p: self.params[f"{n}.{p}"] for p in g.nodes[n].params} for n in self.order}
        self.node_state = {n: self._state(n) for n in self.order}  # running statistics, torch's own

    def _state(self, node: str) -> dict:
        d, layer = self.g.nodes[node], self.layers[node]
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
            values[node] = self.layers[node].torch_forward(d.args, self.node_params[node],
                                                           [values[u] for u in self.inputs[node]], train,
                                                           self.node_state[node] or None)
            if timer is not None:
                timer(node, values[node])
        if labels is None:
            return values[self.scores]
        return sum(values[n] * w for n, w in self.losses.items()) if len(self.losses) > 1 else values[self.loss]
