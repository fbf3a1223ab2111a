"""The cuda backend's gradient sums over NCCL. Skipped, with the reason, without a
GPU, PyCUDA or the NCCL library (one GPU: the bindings; two: ranks against one process,
towers included)."""
from __future__ import annotations

import numpy as np
import pytest
from mpirun import HERE, alone, missing, mpiexec, with_dropout

pytestmark = pytest.mark.gpu

TOWERS = """network towers
input image : 3 x 16 x 16
input label : 10 classes
defaults conv, fc { init = gauss(0.05); bias = 0 }
tower on gpu0, gpu1 {
  c1 = conv(image, 8, size=3, pad=1) -> relu -> maxpool(2)
  f2 = fc(all c1, 32) -> relu -> dropout(0.5)
}
out = fc(all f2, 10) on gpu0
loss = softmax_loss(out, label)
train { batch = 16 }
"""


def gpus() -> int:
    try:
        import pycuda.driver as drv
        drv.init()
        from netdsl.runtime import cuda  # noqa: F401
        return drv.Device.count()
    except Exception:  # ImportError, or no driver
        return 0


def nccl_or_skip(count: int):
    if gpus() < count:
        pytest.skip(f"needs {count} CUDA GPU(s) through PyCUDA, found {gpus()}")
    from netdsl.distributed.nccl import Nccl
    try:
        return Nccl()
    except Exception as error:
        pytest.skip(f"no NCCL library: {error}")


def test_one_rank_nccl_average_leaves_the_buffer_as_it_is():
    nccl = nccl_or_skip(1)
    import pycuda.driver as drv
    import pycuda.gpuarray as gpuarray
    context = drv.Device(0).retain_primary_context()
    context.push()
    try:
        comm = nccl.init_rank(nccl.unique_id(), 1, 0)
        values = np.arange(1000, dtype=np.float32)
        buffer, stream = gpuarray.to_gpu(values), drv.Stream()
        nccl.average(int(buffer.gpudata), values.size, comm, stream.handle)
        stream.synchronize()
        assert nccl.failed(comm) is None
        np.testing.assert_array_equal(buffer.get(), values)
        nccl.lib.ncclCommDestroy(comm)
    finally:
        drv.Context.pop()


def weights(tmp_path, net, ranks):
    out = tmp_path / f"w{ranks}.npz"
    args = [str(HERE / "rank_steps.py"), net, str(out), "--batch", "16", "--steps", "5", "--backend", "cuda"]
    done = mpiexec(ranks, ["python"] + args) if ranks > 1 else alone(args)
    assert done.returncode == 0, done.stdout + done.stderr
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("network", ["lenet", "towers"])
def test_two_gpu_ranks_match_one_process(tmp_path, network):
    nccl_or_skip(2)
    if missing():
        pytest.skip(missing())
    if network == "towers":  # two logical GPUs on each rank's one physical GPU, data parallel across ranks
        net = tmp_path / "towers.net"
        net.write_text(TOWERS)
        net = str(net)
    else:
        net = with_dropout("lenet.net", "f5", tmp_path)
    one, two = weights(tmp_path, net, 1), weights(tmp_path, net, 2)
    scale = max(float(np.abs(v).max()) for v in one.values())
    assert max(float(np.abs(one[k] - two[k]).max()) for k in one) <= 1e-5 * scale
