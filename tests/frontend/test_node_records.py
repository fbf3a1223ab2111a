"""The graph's nodes are typed records (netdsl/nodes.py): misspelt fields and
string roles fail where they are written, and the sort key is an Order, not a
float nudged by a pass."""
from pathlib import Path

import pytest

from netdsl.compiler import compile_graph
from netdsl.graph_ops import forward_nodes, image_input, label_input, layers, topological
from netdsl.nodes import NetGraph, Node, Order, Part, Phase, Role

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FANOUT = """
input image : 3 x 8 x 8
input label : 4 classes
a = conv(image, 4, size=3, pad=1) -> relu
b = conv(a, 4, size=3, pad=1)
c = add(a, b) -> fc(4)
loss = softmax_loss(c, label)
"""


@pytest.fixture(scope="module")
def alexnet():
    return compile_graph(EXAMPLES / "alexnet.net", training=True)


def test_every_node_is_a_record_with_a_role_and_an_order(alexnet):
    assert isinstance(alexnet, NetGraph)
    for name, node in alexnet.nodes(data=True):
        assert isinstance(node, Node), name
        assert isinstance(node.role, Role) and isinstance(node.order, Order), name


def test_a_misspelt_field_is_refused():
    g = NetGraph()
    with pytest.raises(TypeError, match="no field `shap`"):
        g.add_node("x", role=Role.LAYER, shap=(3,))
    g.add_node("y", role=Role.LAYER)
    with pytest.raises(TypeError, match="not subscriptable"):
        g.nodes["y"]["shape"]


def test_a_role_compared_with_a_string_and_a_membership_test_are_refused():
    node = Node(role=Role.LAYER)
    with pytest.raises(TypeError, match="Role.LAYER"):
        node.role == "layer"
    with pytest.raises(TypeError, match="every field"):
        "shape" in node
    assert node.is_layer and not node.is_input and node.role.forward


def test_a_copy_and_a_subgraph_keep_records_of_their_own(alexnet):
    forward = alexnet.subgraph(forward_nodes(alexnet)).copy()
    assert isinstance(forward, NetGraph)
    assert set(forward) == {n for n in alexnet if alexnet.nodes[n].role.forward}
    name = "conv1.conv@gpu0"
    assert forward.nodes[name].shape == alexnet.nodes[name].shape == (48, 55, 55)
    forward.nodes[name].device = "gpu7"
    assert alexnet.nodes[name].device == "gpu0"


def test_orders_follow_the_file_then_the_tower_copy_then_the_side(alexnet):
    order = {n: alexnet.nodes[n].order for n in alexnet}
    # Tower copies share the statement's place, the tower's first device first.
    assert order["conv1.conv@gpu0"] < order["conv1.conv@gpu1"] < order["conv1.act@gpu0"]
    assert order["conv1.conv@gpu0"].copy == 0 and order["conv1.conv@gpu1"].copy == 1
    # An inserted concat sits just before the layer it feeds, a transfer just after its producer.
    assert order["conv3.cat@gpu0"] == order["conv3.conv@gpu0"].beside(Part.BEFORE)
    assert order["conv2.maxpool@gpu1->gpu0"] == order["conv2.maxpool@gpu1"].beside(Part.AFTER)
    # The backward phase comes after every forward node.
    assert max(o for o in order.values() if o.phase is Phase.FORWARD) < min(
        o for o in order.values() if o.phase is Phase.BACKWARD)
    # An update right after its backward.
    assert order["fc8:update"] == order["fc8:backward"].beside(Part.AFTER)


def test_a_gradient_sum_takes_its_backward_s_place_just_before_it():
    g = compile_graph(text=FANOUT, training=True)
    total, back = g.nodes["a.relu:gradsum"], g.nodes["a.relu:backward"]
    assert total.role is Role.GRADSUM and total.of == "a.relu"
    assert total.order == back.order.beside(Part.BEFORE)
    steps = topological(g)
    assert steps.index("a.relu:gradsum") == steps.index("a.relu:backward") - 1


def test_the_graph_questions(alexnet):
    assert image_input(alexnet) == "image" and label_input(alexnet) == "label"
    assert layers(alexnet)[0] == "conv1.conv@gpu0" and layers(alexnet)[-1] == "loss"
    assert all(alexnet.nodes[n].is_layer for n in layers(alexnet))
    assert forward_nodes(alexnet)[:2] == ["image", "label"]
