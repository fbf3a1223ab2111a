"""PyTorch twins of the example networks, for side-by-side timing only.

The two-GPU AlexNet equals one torch model with groups=2 in conv2, conv4 and
conv5 (each tower reads only its own half of the channels); conv1, conv3 and
the fully connected layers read everything, as the towers' `all` links do.
"""
from __future__ import annotations

import torch
from torch import nn


def alexnet(classes: int = 1000) -> nn.Module:
    def lrn():  # the paper's alpha=1e-4 over 5 channels is torch's alpha=5e-4
        return nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)

    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4, padding=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, classes))


def cifar(classes: int = 10) -> nn.Module:
    def lrn():
        return nn.LocalResponseNorm(3, alpha=1.5e-4, beta=0.75, k=1.0)

    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(), lrn(),
        nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False), lrn(),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False),
        nn.Flatten(), nn.Linear(1024, classes))


MODELS = {"alexnet": alexnet, "cifar": cifar}


def train_step_fn(model: nn.Module, lr=0.01):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step
