"""Encode settings: how a model's outputs become the codes ingest stores.

Why a leaf: the settings are part of the checkpoint's schema (config.json `encode`) and of its
model id (`pipeline.model.checkpoint.model_id`), and the encode step reads them too; both import
them from here, and this module imports nothing of the pipeline but its errors.
"""

from __future__ import annotations

from pipeline.errors import BadInput

# How the encode step (`pipeline.model.encode.encode_inputs`) turns model outputs into codes. Part
# of the model id (`pipeline.model.checkpoint.model_id`): change anything here that changes the
# codes (a threshold, test-time augmentation, the packing) and say so in this dict, so that the new
# codes get a new id. `frames` too: the readers' orientation changes the codes of the same archive
# file.
ENCODE_SETTINGS = {
    "frames": "THEMIS PGM and CDF rows flipped top to bottom (pyucalgarysrs), docs/READERS.md",
    "input": "preprocess(frame) as float32 (C, S, S), one forward pass in eval mode",
    "tta": "none",
    "bit": "h > 0",
    "layout": "1",  # pipeline.codes.store.LAYOUT: little-endian uint64 words, bit j -> word j // 64
}

# The settings a checkpoint may choose (config.json "encode"); the defaults are what
# ENCODE_SETTINGS describes, so checkpoints written before the settings existed keep their id.
VIEWS = ("none", "mirror", "mirror+shift")
PRECISIONS = ("fp32", "bf16")
DEFAULT_ENCODE = {"views": "none", "precision": "fp32"}


def encode_settings(config: dict | None) -> dict:
    """The checkpoint's encode settings (defaults filled in), validated."""
    raw = (config or {}).get("encode") or {}
    if not isinstance(raw, dict):
        raise BadInput(f"config encode must be an object, not {type(raw).__name__}")
    unknown = set(raw) - set(DEFAULT_ENCODE)
    if unknown:
        raise BadInput(f"config encode: unknown settings {sorted(unknown)}")
    out = {**DEFAULT_ENCODE, **raw}
    if out["views"] not in VIEWS:
        raise BadInput(f"config encode views must be one of {VIEWS}, not {out['views']!r}")
    if out["precision"] not in PRECISIONS:
        raise BadInput(f"encode precision must be one of {PRECISIONS}, not {out['precision']!r}")
    return out


def settings_for_id(config: dict | None) -> dict:
    """What `pipeline.model.checkpoint.model_id` hashes for the encode step."""
    s = encode_settings(config)
    if s == DEFAULT_ENCODE:
        return ENCODE_SETTINGS
    return {**ENCODE_SETTINGS, "tta": s["views"], "precision": s["precision"]}
