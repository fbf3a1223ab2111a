"""Generated .net files, from the grammar's statements with text mutations on
top, and generated `--set` values: `netdsl info` exits 0, or 2 with a
positioned message."""
from __future__ import annotations

from pathlib import Path

from fuzzing import assert_clean, budget, run_cli
from hypothesis import given
from hypothesis import strategies as st

from netdsl.layers import REGISTRY

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HEAD = "input image : 3 x 32 x 32\ninput label : 10 classes\n"
NAMES = ["a", "b", "c1", "p", "image", "label", "x", "all", "f", "act", "pool", "on", "gpu0"]
KINDS = sorted(REGISTRY) + ["act", "convv", "5", "blk", "blk", "w"]
ARGS = sorted({a.name for layer in REGISTRY.values() for a in layer.args}) + ["strde"]
TRAIN_KEYS = ["batch", "epochs", "seed", "optimizer", "schedule", "augment", "test", "batchsize"]
CALLS = ["sgd", "step", "plateau", "constant", "random_crop", "hflip", "pca_lighting", "scale", "gauss", "uniform",
         "center_crop", "ten_crop"]

numbers = st.one_of(st.integers(-3, 300).map(str), st.sampled_from(
    ["0", "-1", "1e30", "1e400", "9" * 401, "0.5", "-0.0", "1e-4", "2.5", "65537", "1e-400", ".5"]))
names = st.sampled_from(NAMES)
values = st.recursive(
    st.one_of(numbers, names, st.sampled_from(['"s"', "true", "false", "relu"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: "[" + ", ".join(v) + "]"),
        st.tuples(st.sampled_from(CALLS), st.lists(inner, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(st.sampled_from(CALLS), st.sampled_from(["lr", "every", "patience", "size", "from", "factor",
                                                           "momentum", "std"]), inner)
        .map(lambda t: f"{t[0]}({t[1]}={t[2]})"),
        names.map(lambda n: f"all {n}"),
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(lambda t: f"{t[0]}{t[1]}{t[2]}"),
    ),
    max_leaves=6,
)
arg = st.one_of(values, st.tuples(st.sampled_from(ARGS), values).map(lambda t: f"{t[0]}={t[1]}"))
layer_call = st.tuples(st.sampled_from(KINDS), st.lists(arg, max_size=4),
                       st.sampled_from(["", "", "", " * 2", " * 0", " * n", " * (1 + 1)", " * -1", " * w"])).map(
    lambda t: (f"{t[0]}({', '.join(t[1])})" if t[1] else t[0]) + t[2])
block_param = st.one_of(names, st.tuples(names, values).map(lambda t: f"{t[0]}={t[1]}"))
layer_stmt = st.tuples(names, st.lists(layer_call, min_size=1, max_size=3), st.sampled_from(["", " on gpu1", " on tpu"])
                       ).map(lambda t: f"{t[0]} = {' -> '.join(t[1])}{t[2]}")
statement = st.one_of(
    layer_stmt, layer_stmt, layer_stmt,
    st.tuples(names, values).map(lambda t: f"param {t[0]} = {t[1]}"),
    st.tuples(names, numbers, numbers).map(lambda t: f"input {t[0]} : {t[1]} x {t[2]} x {t[2]}"),
    st.tuples(names, numbers).map(lambda t: f"input {t[0]} : {t[1]} classes"),
    st.tuples(st.sampled_from(KINDS), st.sampled_from(ARGS), values).map(lambda t: f"defaults {t[0]} {{ {t[1]} = {t[2]} }}"),
    st.lists(layer_stmt, min_size=1, max_size=2).map(lambda s: "tower on gpu0, gpu1 { " + "; ".join(s) + " }"),
    st.lists(st.tuples(st.sampled_from(TRAIN_KEYS), values), min_size=1, max_size=3)
    .map(lambda s: "train { " + "; ".join(f"{k} = {v}" for k, v in s) + " }"),
    names.map(lambda n: f"network {n}"),
    st.tuples(st.sampled_from(["blk", "blk", "conv", "b2"]), st.lists(block_param, min_size=1, max_size=3),
              st.lists(layer_stmt, max_size=3))
    .map(lambda t: f"block {t[0]}({', '.join(t[1])}) {{ " + "; ".join(t[2]) + " }"),
)
TAIL = "f = fc(a, 10)\nloss = softmax_loss(f, label)\n"
TOKENS = ["(", ")", "[", "]", "{", "}", "->", "=", ",", ";", "#", "\n", "all", "x", "on", "\ufeff", "$", '"', "1e99999",
          "*", "/", "+", "-", "block"]


@st.composite
def net_file(draw) -> str:
    body = draw(st.lists(statement, max_size=6))
    text = (HEAD if draw(st.booleans()) else "") + "\n".join(body) + "\n" + (TAIL if draw(st.booleans()) else "")
    for _ in range(draw(st.integers(0, 3))):  # text mutations: what a slip of the keyboard does
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 10)))
        text = text[:i] + draw(st.sampled_from(TOKENS + [""])) + text[j:]
    return text


small = st.integers(0, 12).map(str)
layer_choice = st.one_of(
    st.tuples(st.integers(1, 16), st.integers(1, 7), st.integers(1, 3), st.integers(0, 3))
    .map(lambda t: f"conv({t[0]}, size={t[1]}, stride={t[2]}, pad={t[3]})"),
    st.tuples(st.integers(1, 4), st.integers(1, 3), st.booleans())
    .map(lambda t: f"maxpool({t[0]}, stride={t[1]}, ceil={'true' if t[2] else 'false'})"),
    st.tuples(st.integers(1, 4), st.integers(1, 3)).map(lambda t: f"avgpool({t[0]}, stride={t[1]})"),
    st.sampled_from(["relu", "tanh", "sigmoid", "act", "dropout(0.5)", "lrn(5, alpha=1e-4, beta=0.75, k=2)",
                     "lrn(3)", "dropout(rate=0.0)"]),
)
train_choice = st.tuples(
    st.sampled_from(["", "batch = 16", "batch = 0", "epochs = 2", "seed = 7", "seed = -1"]),
    st.sampled_from(["", "optimizer = sgd(lr=0.1)", "optimizer = sgd(lr=-0.1)", "optimizer = sgd(0.01, 0.9, 0)",
                     "optimizer = sgd(momentum=1)"]),
    st.sampled_from(["", "schedule = step(every=1)", "schedule = step(every=0)", "schedule = plateau(patience=2)",
                     "schedule = constant"]),
    st.sampled_from(["", "augment = [random_crop(32, from=36), hflip]", "augment = [random_crop(24)]",
                     "augment = [scale(0.5), pca_lighting(0.1)]", "augment = []", "test = ten_crop"]),
).map(lambda t: "train { " + "; ".join(x for x in t if x) + " }")


@st.composite
def plausible_net(draw) -> str:
    """Mostly valid networks, so the generated cases reach the shape and placement passes."""
    lines = [HEAD, "param act = " + draw(st.sampled_from(["relu", "tanh", "sigmoid", "5", "conv"])),
             "param w = " + draw(st.sampled_from(["4", "6", "8", "0", "2 * 3", "7 / 2", "relu"]))]
    tower = draw(st.booleans())
    chain = " -> ".join(draw(st.lists(layer_choice, min_size=1, max_size=4)))
    first = f"a = conv(image, {draw(st.integers(1, 8))}, size={draw(st.integers(1, 5))}) -> {chain}"
    if draw(st.booleans()):  # the same layers as a block, used once or several times
        filters = draw(st.sampled_from(["w", "2 * w", "w / 2", "w + 1", "(w - 1) * 2", "w / 3", "3"]))
        lines.append(f"block blk(i, w, k=3) {{ o = conv(i, {filters}, size=k, pad=(k - 1) / 2) -> {chain} }}")
        use = draw(st.sampled_from(["blk(4)", "blk(w)", "blk(w, k=1)", "blk(4) * 2", "blk(w) * 0", "blk(k=5)",
                                    "blk(4, 5, 6)", "blk(4, kk=1)"]))
        first = f"a = conv(image, {draw(st.integers(1, 8))}, size={draw(st.integers(1, 5))}) -> {use}"
        if draw(st.booleans()):  # the whole statement switched off: it passes its one input through, or says why not
            first = "a = " + draw(st.sampled_from(["blk(image, w) * 0", "blk(image, 4) * (w - w)", "relu(image) * 0",
                                                   "concat(image, image) * 0", "blk(imag, 4) * 0", "blk(w) * 0",
                                                   "relu(image) * 0 -> blk(4) * 0 -> relu * 0", "blk(image) * -1"]))
    lines.append("tower on gpu0, gpu1 { " + first + " }" if tower else first)
    reads = "all a" if tower else draw(st.sampled_from(["a", "a, a", "image", "a, image"]))
    lines.append(f"f = fc({reads}, {draw(st.sampled_from(['10', '10', '9', '0', '1e30']))})"
                 + draw(st.sampled_from(["", " on gpu1", " on gpu0"])))
    lines.append("loss = softmax_loss(" + draw(st.sampled_from(["f, label", "f, label", "label, f", "f, f"])) + ")")
    lines.append(draw(train_choice))
    return "\n".join(lines) + "\n"


@budget(200)
@given(text=plausible_net())
def test_plausible_files(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "plausible.net"
    path.write_text(text, encoding="utf-8")
    code, _, err = run_cli(["info", str(path)])
    assert_clean(["info", text], code, err)


@budget(300)
@given(text=net_file())
def test_generated_files(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "fuzz.net"
    path.write_text(text, encoding="utf-8")
    code, _, err = run_cli(["info", str(path)])
    assert_clean(["info", text], code, err)
    if code == 2 and err.startswith(str(path)):
        assert len(err) < 4000  # long lines are cut


SET_NAMES = ["act", "pool", "batch", "epochs", "seed", "optimizer", "optimizer.lr", "optimizer.momentum",
             "schedule", "schedule.every", "augment", "test", "nope", "optimizer.nope", "x", "",
             "basic.c1.conv.stride", "basic.c9.conv.stride", "basic.c1.conv.nope", "basic.stride", "basic"]


@budget(150)
@given(sets=st.lists(st.tuples(st.sampled_from(SET_NAMES), values), min_size=1, max_size=3),
       example=st.sampled_from(["lenet.net", "cifar.net", "alexnet.net", "resnet18.net"]))  # params, blocks
def test_generated_set_values(sets, example):
    argv = ["info", str(EXAMPLES / example)]
    for name, value in sets:
        argv += ["--set", f"{name}={value}"]
    code, _, err = run_cli(argv)
    assert_clean(argv, code, err)
