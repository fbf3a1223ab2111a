"""ImageNet-style dataset folders, the preprocessing cache, augmentation and batch loading.

folder -> prepare -> augment -> loader: scan a DIR/train|val/<class>/ tree, decode it
once into memory-mapped 256x256 uint8 arrays with training statistics, and serve
deterministic augmented float32 NCHW batches. synthetic writes small built-in datasets.
"""

from netdsl.data.augment import AugmentSpec, augment_batch, center_crop, counter_rng, random_crop, ten_crop
from netdsl.data.folder import DataWarning, FolderDataset, decode_square, scan_folder
from netdsl.data.loader import BatchLoader
from netdsl.data.prepare import PreparedData, load_prepared, prepare
from netdsl.data.synthetic import make_digits, make_shapes

__all__ = [
    "AugmentSpec",
    "BatchLoader",
    "DataWarning",
    "FolderDataset",
    "PreparedData",
    "augment_batch",
    "center_crop",
    "counter_rng",
    "decode_square",
    "load_prepared",
    "make_digits",
    "make_shapes",
    "prepare",
    "random_crop",
    "scan_folder",
    "ten_crop",
]
