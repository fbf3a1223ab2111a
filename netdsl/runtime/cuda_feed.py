"""Training batches cross PCIe as uint8 and are finished on the device.

The host does only what needs the preprocessing cache and the batch's random
draws (augment.crop_batch: each image's window, mirror flag and lighting
shift, a pure function of seed, epoch and batch, so resume stays exact) and
copies the uint8 crops into a pinned staging buffer. Per image that is
crop*crop*3 bytes (150,528 for AlexNet's 224x224) plus 12 bytes of window and
12 of lighting shift, against 602,112 bytes of float32. The mean image is
uploaded once. templates/input_augment.j2 then writes the first layer's float32
input: conversion, mirror, mean, lighting and the input scale, in the host
path's float32 operations and order, so the batch is the host's bit for bit.

The copies go on a stream of their own; an event recorded after them is what
the device's main stream waits for before the kernel runs, so no host wait is
added. Two slots (pinned staging and device buffers, alternately): while step
n runs, `send_ahead` stages and uploads batch n+1 into the slot step n does not
use, so the host's copy into pinned memory and the PCIe transfer overlap step
n's kernels; step n+1's kernel then finds its batch on the device. A slot is
refilled only after the step that last read it was waited for (its final
read), so neither buffer needs a wait of its own.
"""
from __future__ import annotations

import math

import numpy as np
import pycuda.driver as drv

from ..codegen import render_module
from ..codegen.training import INPUT_THREADS, render_input_augment
from ..data.augment import Crops

KERNEL = "netdsl_input_augment"
# the kernel's arguments (templates/input_augment.j2), for Function.prepare
ARGUMENTS = [np.uintp, np.uintp, np.uintp, np.uintp, np.float32, np.uintp, np.int32]
SLOTS = 2  # the batch a step reads, and the next one uploading meanwhile
MAX_BLOCKS = 4096  # a grid-stride loop: any count is correct; this many fill an H200 several times


class Feed:
    """The uint8 upload and the augmentation kernel for one executor's image input."""

    def __init__(self, ex, mean: np.ndarray | None, scale: float, size: int, lighting: bool):
        """`mean`: the size x size x channels mean image (None: no mean subtraction);
        `size`: the side of the prepared images the crops are cut from."""
        self.ex = ex
        self.ref = ex.plan.inputs[ex.image_input]
        channels, crop, width = ex.g.nodes[ex.image_input].shape
        if crop != width:
            raise ValueError(f"device augmentation takes square crops, not {crop}x{width}")
        if mean is not None and mean.shape != (size, size, channels):
            raise ValueError(f"the mean image is {mean.shape}, not {(size, size, channels)}")
        self.shape = (crop, crop, channels)
        self.scale = np.float32(scale)
        self.device = ex.plan.placement[ex.plan.tensors[self.ref].device]
        self.place = ex.places[self.device]
        source = render_module([render_input_augment(crop, size, channels, mean is not None, lighting,
                                                     scale != 1.0)], "cuda")
        self.kernel = ex.compile(source)[self.device].get_function(KERNEL)
        self.kernel.prepare(ARGUMENTS)
        batch, pixels = ex.batch, crop * crop * channels
        sizes = {"crops": (batch * pixels, np.uint8), "windows": (batch * 3, np.int32),
                 "shifts": (batch * channels, np.float32)}
        with self.place:
            self.stream = drv.Stream()
            self.slots = [{"staging": {name: drv.pagelocked_empty(*shape) for name, shape in sizes.items()},
                           "uploaded": drv.Event()} for _ in range(SLOTS)]
            for slot in self.slots:
                slot["memory"] = {name: drv.mem_alloc(max(a.nbytes, 256)) for name, a in slot["staging"].items()}
            self.mean = drv.mem_alloc(max(4 * size * size * channels, 256))
            if mean is not None:
                drv.memcpy_htod(self.mean, np.ascontiguousarray(mean, np.float32).reshape(-1))
        self.lighting = lighting
        self.turn = 0  # the slot the next upload fills
        self.ahead: tuple[Crops, int] | None = None  # a batch uploaded before its step, and its slot

    def load(self, batch: Crops) -> int:
        """Queues the kernel on the main stream, after the batch's upload (made now, unless
        `send_ahead` made it during the step before)."""
        if self.ahead is not None and self.ahead[0] is batch:
            index = self.ahead[1]
            self.ahead = None
        else:
            index = self._upload(batch)
        slot, n = self.slots[index], len(batch)
        total = n * int(np.prod(self.shape))
        grid = (min(math.ceil(total / INPUT_THREADS), MAX_BLOCKS), 1, 1)
        main = self.ex.device_stream(self.device)
        with self.place:
            main.wait_for_event(slot["uploaded"])
            self.kernel.prepared_async_call(grid, (INPUT_THREADS, 1, 1), main, *(
                int(slot["memory"][name]) for name in ("crops", "windows", "shifts")), int(self.mean), self.scale,
                self.ex._address(self.ref), n)
        return n

    def send_ahead(self, batch: Crops) -> None:
        """Uploads the next step's batch while this step runs (call before its final read)."""
        self.ahead = (batch, self._upload(batch))

    def _upload(self, batch: Crops) -> int:
        n = len(batch)
        if n != self.ex.batch:
            raise ValueError(f"device augmentation takes whole batches of {self.ex.batch}, got {n}")
        if batch.crops.shape[1:] != self.shape:
            raise ValueError(f"crops must be N x {'x'.join(map(str, self.shape))}, got {batch.crops.shape}")
        if self.lighting != (batch.shifts is not None):
            raise ValueError("the batch's lighting shifts do not match the kernel's (lighting on or off)")
        index, self.turn = self.turn, (self.turn + 1) % SLOTS
        if self.ahead is not None and self.ahead[1] == index:
            self.ahead = None  # a batch sent ahead but not stepped on (a rerun, a restart): overwritten
        slot = self.slots[index]
        staging = slot["staging"]
        staging["crops"][...] = batch.crops.reshape(-1)
        staging["windows"][...] = np.asarray(batch.windows, np.int32).reshape(-1)
        names = ["crops", "windows"]
        if self.lighting:
            staging["shifts"][...] = np.asarray(batch.shifts, np.float32).reshape(-1)
            names.append("shifts")
        with self.place:
            for name in names:
                drv.memcpy_htod_async(slot["memory"][name], staging[name], self.stream)
            slot["uploaded"].record(self.stream)
        return index
