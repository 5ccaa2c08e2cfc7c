"""Training and evaluating hashing models.

datasets   labelled splits (CIFAR-10, synthetic aurora, archives, folders, Parquet)
methods    ours, DPSH, DSH, CNNH: heads and losses on one training loop
losses     the loss terms the methods share
loop       the training loop: recipe, checkpoint every epoch, exact resume
evaluate   codes of the splits through the one encode step, and their retrieval metrics
"""
