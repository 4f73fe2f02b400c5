"""The paper's image data sets, read from their standard on-disk layouts.

Every builder returns a :class:`~debiascl.data.base.BiasedDataset` whose items are
``(index, x, y, a)`` with ``x`` float32 in [0, 1] of shape ``(3, S, S)``: resized to a fixed
size ``S`` when loaded (option ``image_size``), neither normalised nor augmented.

========================  ================================================================
name                      layout under ``root``
========================  ================================================================
``cifar10``               ``cifar-10-batches-py/`` (torchvision's pickles)
``cifar100``              ``cifar-100-python/`` (torchvision's pickles)
``stl10``                 ``stl10_binary/`` (torchvision's binaries)
``celeba``                official: ``img_align_celeba/``, ``list_attr_celeba.txt``,
                          ``list_eval_partition.txt``; Kaggle: the same names as ``.csv``,
                          images in ``img_align_celeba/img_align_celeba/`` (also accepted under
                          ``root/celeba/``, torchvision's folder)
``waterbirds``            group_DRO's generator output: ``metadata.csv`` (img_filename, y,
                          split, place) and the image folders it names
``imagenet100``           ``train/<wnid>/``, ``val/<wnid>/`` and a class list (one wnid a line)
``metadata-csv``          ``metadata.csv`` (filename, split, y, a; SubpopBench's convention)
========================  ================================================================

Split choices (documented here because the sources differ):

* CIFAR-10/100, STL-10 and ImageNet-100 have no official validation split. ``val`` is a
  seeded, class-stratified holdout of ``val_fraction`` (default 0.1, seed ``split_seed``,
  default 0; ``floor(val_fraction * n_c + 0.5)`` images of each class c, the rule of every
  data set's split) of the official training set and ``train`` is the rest; ``test`` is the official
  test set (ImageNet-100: the official ``val/`` folder, as its test labels are not public).
  ``val_fraction=0`` trains on the whole official training set, as the paper does; the ``val``
  split is then empty (training turns its kNN monitor off, evaluation uses train and test).
* CelebA, Waterbirds and metadata-csv use their official partitions; a partition without val
  rows gives an empty ``val`` split (an empty train or test split is an error).
* STL-10 with ``unlabeled=True`` appends the 100 000 unlabeled images to ``train`` (for
  contrastive pre-training) with ``y = -1``; ``val`` and ``test`` ignore the option, and
  evaluation should use the labelled train split (``unlabeled=False``).

Only CIFAR and STL-10 can be downloaded (through torchvision, and only with ``download=True``).
CIFAR/STL-10 have no bias attribute (``a = -1``; evaluation reports worst-class accuracy).
File-based sets resize the shorter image side to ``image_size`` (default 224, SPEC section 5)
and centre-crop a square; images are decoded only when an item is read, or once into a
decoded-image cache that later reads come from (:mod:`debiascl.data.cache`).
"""

# Importing the builders registers their data sets.
from debiascl.data.images import arrays, celeba, folders  # noqa: F401
from debiascl.data.images.datasets import ArrayImageDataset, ImageFileDataset, ImageFiles
from debiascl.data.images.decoding import decode_image, load_image
from debiascl.data.images.reading import SPLIT_NAMES, read_csv, stratified_holdout

__all__ = [
    "SPLIT_NAMES",
    "ArrayImageDataset",
    "ImageFileDataset",
    "ImageFiles",
    "decode_image",
    "load_image",
    "read_csv",
    "stratified_holdout",
]
