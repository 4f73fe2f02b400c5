"""Built-in biased benchmarks made offline from real images (scikit-learn digits, Fashion-MNIST).

Real grey-scale images get a *background* chosen by our code, so that in the train split the
background predicts the class (the spurious cue, as the place does in Waterbirds) while in val
and test it is independent of the class.

Rendering (every benchmark). The grey image is resized to ``image_size`` x ``image_size``
(bilinear) and scaled to g in [0, 1]; the object mask is alpha = clip(4 g, 0, 1); the RGB image
is ``alpha * g + (1 - alpha) * background``: the object keeps its grey levels, the (near-)black
surround shows the background. Images are stored as uint8 (n, 3, S, S); an item is float32 in
[0, 1]. ``mean`` / ``std`` are the per-channel statistics of the train split (same for all splits).

Constructions.

- ``biased-digits`` / ``biased-fmnist`` (10 classes, colour bias): the background is a flat colour
  from a palette of 10 (``attribute_names``: red, orange, yellow, green, teal, blue, purple, pink,
  brown, grey); class y's colour is a = y. Groups g = 10 y + a (100 groups).
- ``biased-digits-binary`` / ``biased-fmnist-binary`` (Waterbirds-like): two super-classes,
  digits 0-4 (y = 0) vs 5-9 (y = 1), and Fashion-MNIST upper-body clothing {T-shirt/top,
  Pullover, Coat, Shirt} (y = 0) vs shoes and bags {Sandal, Sneaker, Bag, Ankle boot} (y = 1;
  Trouser and Dress are left out), on two textured backgrounds: ``land`` (a = 0: olive, vertical
  stripes) and ``water`` (a = 1: blue, wavy horizontal stripes), each with a random phase per
  image. Class y's background is a = y. Groups g = 2 y + a (4 groups).
- ``biased-digits-patch`` (a bias that is not a colour): digits 0-4 (y = 0) vs 5-9 (y = 1) on a
  black background with one small white square, ``max(2, round(S / 6))`` pixels a side, one
  pixel from the image's edge: ``patch top`` (a = 0: in the top-left corner) or ``patch bottom``
  (a = 1: in the bottom-left corner). Only its position differs, and the vertical position
  survives a horizontal flip. Class y's patch is a = y. Groups g = 2 y + a (4 groups).

A sample is *bias-aligned* when a equals its class's background (a == y in all four):
``bias_aligned`` (:attr:`debiascl.data.base.BiasedDataset.bias_aligned`, the majority background
of the class in the training split) is exactly that for ``rho > 1 / A``.

Bias assignment (seeded by option ``seed``, default 0; deterministic).

- train: within each class (super-class for the binary variants) of n_c images, in a seeded
  random order, the first ``floor(rho * n_c + 0.5)`` are aligned; the others are conflicting and
  get the other backgrounds dealt in turn (starting at a seeded offset), so every conflicting
  background is equally frequent (to +-1). ``rho`` defaults to 0.95.
- val / test: group-balanced, the background independent of the class. With
  ``balanced_copies=True`` every image appears once with every background (exactly balanced;
  the split is num_attributes times larger); with False every image appears once and the
  backgrounds are dealt in turn within each class (balanced to +-1 per class). Default: True for
  the digits benchmarks (small), False for Fashion-MNIST.

Smaller train splits (option ``train_fraction`` f, default 1): the train split keeps
``floor(f n_c + 0.5)`` of each class's n_c images (seeded by ``seed``; super-classes for the
binary variants) before the bias is assigned; val and test are unchanged. For quick runs and
studies at the native image size, e.g. f = 0.1 keeps 4320 of biased-fmnist-binary's 43200.

Source splits and sizes (defaults: rho 0.95, seed 0).

- digits (sklearn's 1797 8x8 images; ``image_size`` default 16): seeded split stratified by
  digit, ``floor(0.2 n + 0.5)`` of each digit to test and to val: train 1079 / val 359 /
  test 359 images. ``biased-digits``: train 1079 (1029 aligned, 50 conflicting), val 3590 and
  test 3590 (359 aligned each, 359 per colour). ``biased-digits-binary``: train 1079 (541 of
  y = 0, 538 of y = 1; 1025 aligned, 54 conflicting), val 718 and test 718 (359 aligned).
- Fashion-MNIST (IDX files, 28x28; ``image_size`` default 28): official train -> train and a
  seeded class-stratified 10% val; official test -> test. ``biased-fmnist``: train 54000 (51300
  aligned), val 6000, test 10000 (100 per group). ``biased-fmnist-binary``: train 43200 (41040
  aligned), val 4800, test 8000 (2000 per group).

Fashion-MNIST's files (``train-images-idx3-ubyte`` etc., optionally ``.gz``) are looked for in
``root``, ``root/FashionMNIST/raw`` (torchvision's layout), then /usr/share/datasets/fashion-mnist
(Debian's package ``dataset-fashion-mnist``); with ``download=True`` torchvision fetches them into
``root`` (default ``~/.cache/debiascl``). A given ``root`` must exist (unless ``download=True``):
a mistyped folder is an error, not a silent fall-back to Debian's copy.
"""

# Importing the benchmarks registers them.
from debiascl.data.synthetic.benchmarks import CONSTRUCTIONS, SyntheticBiasedDataset
from debiascl.data.synthetic.rendering import PALETTE, render
from debiascl.data.synthetic.sources import read_idx

__all__ = ["CONSTRUCTIONS", "PALETTE", "SyntheticBiasedDataset", "read_idx", "render"]
