"""The names that training and model options accept, in a module that imports nothing.

Why here: `aurorahash train --help` (and every parser build, `aurorahash --help` included) needs
these names as `choices`, and the modules that implement them import torch (seconds). Each name
is defined once, here; those modules import it from here.
"""

ARCHS = ("compact", "alexnet", "alexnet-sp", "im-alexnet-sp")  # pipeline.model.archs
AMP_CHOICES = ("auto", "on", "off")  # pipeline.model.precision
DATASETS = ("cifar10", "synthetic-aurora", "parquet", "folder", "archive")  # training.datasets
METHODS = ("ours", "dpsh", "dsh", "cnnh", "cibhash", "semi", "classifier")  # training.methods
HASH_LOSSES = ("dpsh", "dsh", "none")  # pipeline.training.losses
POLICIES = ("shift-flip", "allsky", "photo")  # pipeline.training.augment
RECIPES = ("airbench", "muon", "sgd")  # pipeline.training.loop
DEFAULT_RECIPE = "muon"  # what `train` runs without --recipe (benchmarks/RESULTS.md: why)
