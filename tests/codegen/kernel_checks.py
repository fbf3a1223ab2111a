"""One layer's generated kernels against the numpy reference, whatever runs them.

`run(kernel, buffers, scalars)` executes one kernel of a plan: a C call
through ctypes, or an emulated CUDA launch. Buffers a kernel writes start as
NaN (or -1 for integers), so an element a kernel forgets to write fails the
comparison instead of passing as a lucky zero.
"""
from __future__ import annotations

import numpy as np
from tolerances import FLOAT32_RTOL, assert_close


def fresh_buffers(source, case) -> dict[str, np.ndarray]:
    """Every buffer of the layer: the case's data as float32 / int32, the rest poisoned."""
    buffers = {}
    for name, buf in source.buffers.items():
        if name in case.data:
            buffers[name] = np.ascontiguousarray(case.data[name], buf.dtype).reshape(-1)
        else:
            buffers[name] = np.full(buf.size, np.nan if buf.dtype == "float32" else -1, buf.dtype)
    return buffers


def reference(case, dtype, train=True):
    """Forward output, input gradients and parameter gradients of the numpy reference."""
    def cast(name):
        value = case.data[name]
        return value if value.dtype.kind == "i" else value.astype(dtype)

    xs = [cast(f"x{i}") for i in range(len(case.in_shapes))]
    params = {name: cast(name) for name in case.layer.param_shapes(case.args, case.in_shapes)}
    ctx = case.context(train)
    state = {name: cast(name).copy() for name in case.layer.state_shapes(case.args, case.in_shapes)}
    ctx.state = state or None
    y, cache = case.layer.forward(case.args, params, xs, ctx)
    dy = case.data["dy"].astype(dtype).reshape(np.shape(y))
    dxs, dparams = case.layer.backward(case.args, params, cache, dy, ctx)
    return y, dxs, dparams


def _state_after(case, train) -> dict:
    """The layer's state after the reference's forward, which updates it in place."""
    state = {name: case.data[name].astype(np.float64).copy()
             for name in case.layer.state_shapes(case.args, case.in_shapes)}
    if state:
        xs = [case.data[f"x{i}"] for i in range(len(case.in_shapes))]
        params = {name: case.data[name] for name in case.layer.param_shapes(case.args, case.in_shapes)}
        ctx = case.context(train)
        ctx.state = state
        case.layer.forward(case.args, params, xs, ctx)
    return state


def _takes(kernels, scalar) -> bool:
    return any(arg.scalar == scalar for kernel in kernels for arg in kernel.args)


def check_forward(case, source, run) -> None:
    modes = (True, False) if _takes(source.forward, "train") else (True,)
    for train in modes:
        buffers = fresh_buffers(source, case)
        for kernel in source.forward:
            run(kernel, buffers, case.scalars(train))
        expected, _, _ = reference(case, np.float64, train)
        actual = buffers["y"].reshape(np.shape(expected))
        assert_close(actual, expected, FLOAT32_RTOL, f"{case} y (train={train})")
        for name, value in _state_after(case, train).items():  # running statistics, updated in training
            assert_close(buffers[name], value, FLOAT32_RTOL, f"{case} state {name} (train={train})")
        if "random" in case.layer.traits:
            # Same seed, step and stream: the kernel must drop exactly the units numpy drops.
            bits, _, _ = reference(case, np.float32, train)
            np.testing.assert_array_equal(actual, bits, err_msg=f"{case}: not bit-identical to numpy")


def check_backward(case, source, run) -> None:
    buffers = fresh_buffers(source, case)
    for kernel in source.forward + source.backward:
        run(kernel, buffers, case.scalars())
    _, dxs, dparams = reference(case, np.float64)
    for i, expected in enumerate(dxs):
        if expected is None:  # class labels have no gradient
            assert f"dx{i}" not in buffers, f"{case}: a gradient buffer for input {i}, which has none"
            continue
        assert_close(buffers[f"dx{i}"].reshape(expected.shape), expected, FLOAT32_RTOL, f"{case} dx{i}")
    for name, expected in dparams.items():
        assert_close(buffers[f"d{name}"].reshape(expected.shape), expected, FLOAT32_RTOL, f"{case} d{name}")
    if "random" in case.layer.traits:
        _, bits, _ = reference(case, np.float32)
        np.testing.assert_array_equal(buffers["dx0"].reshape(bits[0].shape), bits[0],
                                      err_msg=f"{case}: backward mask not bit-identical to numpy")
