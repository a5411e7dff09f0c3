"""Routing data: labelled routing datasets on disk, validation sets, splits.

Lowest layer beside :mod:`unirouter.embedding`: imports only the foundation modules.
"""

from unirouter.data.datasets import (
    MANIFEST_FORMAT,
    RoutingDataset,
    ValidationSet,
    default_data_dir,
    load_dataset,
    split_indices,
)

__all__ = ["MANIFEST_FORMAT", "RoutingDataset", "ValidationSet", "default_data_dir", "load_dataset", "split_indices"]
