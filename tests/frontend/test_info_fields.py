"""`netdsl info`: each layer's arguments, receptive field, effective stride and
activation memory per image, checked against AlexNet worked by hand."""
from pathlib import Path

from netdsl.cli import main
from netdsl.compiler import compile_graph
from netdsl.receptive import receptive_fields

ALEXNET = Path(__file__).resolve().parents[2] / "examples" / "alexnet.net"


def row(out: str, layer: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(layer + " "))


def test_alexnet_conv5_sees_163_pixels_at_stride_16():
    """By hand: conv1 11 (stride 4); pool1 11 + 2*4 = 19 (8); conv2 19 + 4*8 = 51;
    pool2 51 + 2*8 = 67 (16); conv3, conv4, conv5 add 2*16 each: 99, 131, 163."""
    f = receptive_fields(compile_graph(ALEXNET, training=True))
    expected = {"conv1.conv": (11, 4), "conv1.maxpool": (19, 8), "conv2.conv": (51, 8),
                "conv2.maxpool": (67, 16), "conv3.conv": (99, 16), "conv4.conv": (131, 16),
                "conv5.conv": (163, 16), "conv5.maxpool": (195, 32)}
    for layer, (size, stride) in expected.items():
        for gpu in ("gpu0", "gpu1"):
            assert (f[f"{layer}@{gpu}"].size, f[f"{layer}@{gpu}"].stride) == ((size, size), (stride, stride)), layer


def test_info_prints_arguments_fields_and_activation_memory(capsys):
    assert main(["info", str(ALEXNET), "--batch", "2"]) == 0
    out = capsys.readouterr().out
    conv5 = row(out, "conv5.conv@gpu0").split()
    assert conv5[6:8] == ["163", "16"] and "filters=128" in conv5 and "size=3" in conv5
    assert " ".join(conv5[8:10]) == "84.5 KiB"  # 128*13*13 floats
    assert "region=across" in row(out, "conv1.norm@gpu0")
    # every layer's output for one image, inputs left out
    g = compile_graph(ALEXNET, training=True)
    total = sum(4 * g.nodes[n].shape[0] * (g.nodes[n].shape[1] * g.nodes[n].shape[2] if len(g.nodes[n].shape) == 3 else 1)
                for n in g if g.nodes[n].is_layer)
    assert f"activations/image     {total / 2**20:,.1f} MiB" in out


def test_set_changes_show_in_the_argument_column_and_the_fields(capsys):
    assert main(["info", str(ALEXNET), "--set", "pool=2", "--set", "conv1.norm.region=within"]) == 0
    out = capsys.readouterr().out
    assert "size=2 stride=2" in row(out, "conv1.maxpool@gpu0")
    assert "region=within" in row(out, "conv1.norm@gpu0") and "region=across" in row(out, "conv2.norm@gpu0")
    # a within-map LRN of 5 widens the field by 4*4; pool 2 by 1*4 instead of 2*4
    assert row(out, "conv1.norm@gpu0").split()[4:6] == ["27", "4"]
    assert row(out, "conv1.maxpool@gpu0").split()[4:6] == ["31", "8"]
    assert main(["info", str(ALEXNET), "--set", "norm=identity"]) == 0
    out = capsys.readouterr().out
    assert row(out, "conv1.norm@gpu0").split()[1] == "identity" and "60,965,224" in out


GROUPED = """
input image : 4 x 16 x 16
input label : 3 classes
a = conv(image, 8, size=3, stride=2, pad=1, groups=2)
b = conv(image, 8, size=5, dilation=2)
c = concat(a, b) -> maxpool(2)
s = fc(c, 3)
loss = softmax_loss(s, label)
"""


def test_grouped_dilated_and_multi_input_fields():
    f = receptive_fields(compile_graph(text=GROUPED, training=True))
    assert (f["a"].size, f["a"].stride) == ((3, 3), (2, 2))     # groups do not change the spatial field
    assert (f["b"].size, f["b"].stride) == ((9, 9), (1, 1))     # dilation 2: a 5-tap window spans 9
    # concat takes its largest input (b: 9, stride 1); the pool then adds 1*1
    assert (f["c.maxpool"].size, f["c.maxpool"].stride) == ((10, 10), (2, 2))


RECTANGULAR = """
input image : 3 x 20 x 20
input label : 3 classes
a = conv(image, 4, size=[1, 7], stride=[2, 1], pad=[0, 3])
b = conv(a, 4, size=[3, 1], dilation=[1, 2])
s = fc(b, 3)
loss = softmax_loss(s, label)
"""


def test_rectangular_windows_have_a_field_per_axis(tmp_path, capsys):
    """By hand: a spans 1 row and 7 columns, rows 2 apart; b adds 2 rows at stride 2 (4) and
    no columns; fc covers b's 8 x 20 outputs: rows 5 + 7*2 = 19, columns 7 + 19 = 26."""
    f = receptive_fields(compile_graph(text=RECTANGULAR, training=True))
    assert (f["a"].size, f["a"].stride) == ((1, 7), (2, 1))
    assert (f["b"].size, f["b"].stride) == ((5, 7), (2, 1))
    assert f["s"].size == (5 + 7 * 2, 7 + 19)
    (tmp_path / "r.net").write_text(RECTANGULAR)
    assert main(["info", str(tmp_path / "r.net")]) == 0
    assert row(capsys.readouterr().out, "b").split()[6:8] == ["5x7", "2x1"]
