"""Rotation by any angle, scaling and translation of the crop a network sees
(N x C x H x W), for `netdsl test --sweep`.

Each output pixel samples the input at the inverse-mapped point with bilinear
interpolation, about the crop's centre ((H-1)/2, (W-1)/2). Sample points
within 1e-6 of a whole pixel are snapped onto it, so 0 degrees, scale 1 and a
whole-pixel shift copy pixels exactly, and 90/180/270 degrees equal
np.rot90 (transforms.py's rotate90 ...) bit for bit.

Where a sample falls outside the crop the corner is filled by one of:
  reflect   mirror the crop about its border pixels' centres (scipy's "mirror"):
            no new edges, the image's own texture continues
  black     pixel value 0 of the raw image (what a camera sees past the frame);
            the border pixel fades to black over one pixel

Every transform here is linear in the pixel values, which transforms.transformed
relies on to move the per-pixel mean correctly.
"""
from __future__ import annotations

import math

import numpy as np

from ..data.resample import resample

FILLS = ("reflect", "black")
SNAP = 1e-6


def sample_points(kind: str, value: float, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) H x W: where each output pixel reads the input.
    rotate: degrees anticlockwise; scale: magnification (2 = twice as large);
    translate / translate_y: pixels right / down."""
    centre = (side - 1) / 2
    dy, dx = np.meshgrid(np.arange(side) - centre, np.arange(side) - centre, indexing="ij")
    if kind == "rotate":
        turn = math.radians(value)
        cos, sin = math.cos(turn), math.sin(turn)
        rows, cols = centre + cos * dy + sin * dx, centre + cos * dx - sin * dy
    elif kind == "scale":
        rows, cols = centre + dy / value, centre + dx / value
    elif kind == "translate":
        rows, cols = centre + dy, centre + dx - value
    elif kind == "translate_y":
        rows, cols = centre + dy - value, centre + dx
    else:
        raise ValueError(f"unknown sweep {kind!r}")
    snap = lambda p: np.where(np.abs(p - np.rint(p)) < SNAP, np.rint(p), p)
    return snap(rows), snap(cols)


def geometric(kind: str, value: float, fill: str = "reflect"):
    """The transform as a function of an N x C x H x W (or C x H x W) array."""
    def transform(x: np.ndarray) -> np.ndarray:
        rows, cols = sample_points(kind, value, x.shape[-1])
        return resample(np.asarray(x, np.float32), rows, cols, fill)
    return transform
