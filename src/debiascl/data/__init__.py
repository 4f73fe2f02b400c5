"""Data sets with bias labels, the built-in biased benchmarks, and batched view pipelines."""

# Importing the modules registers their data sets.
from debiascl.data import images, synthetic, tabular  # noqa: F401
from debiascl.data.base import (
    DATASETS,
    SPLITS,
    BiasedDataset,
    build_dataset,
    register_dataset,
)
from debiascl.data.views import ViewPipeline, build_views
from debiascl.registry import list_datasets

__all__ = [
    "DATASETS",
    "SPLITS",
    "BiasedDataset",
    "ViewPipeline",
    "build_dataset",
    "build_views",
    "list_datasets",
    "register_dataset",
]
