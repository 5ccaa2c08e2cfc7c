"""Readers, preprocessing, model, training, Ray encoding, code-shard store and evaluation."""
