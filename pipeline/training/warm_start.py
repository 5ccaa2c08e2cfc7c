"""`train --init CKPT`: a new run that starts from another checkpoint's weights.

What an observatory does once it has labelled a few nights: train a label-free model on the
whole archive (`--method cibhash`), then fine-tune it on the labelled frames with any method.
Every weight outside the head (backbone, normalisation, whitening, PMT) must match the new
model by name and shape, or the run is refused: a half-loaded backbone would train from a
state nobody asked for. Head weights load where they match (the hash layer at the same code
length) and start fresh otherwise (a class head the label-free model never had). The
preprocessing must be the same, because the weights were learnt on its output. The new run's
optimiser, schedule, EMA and method state start from zero; only the weights carry over.
"""

from __future__ import annotations

import torch

from pipeline.errors import BadInput


def in_head(name: str) -> bool:
    """Whether a state-dict entry belongs to the hash/class head (`body.head.*`)."""
    return "head" in name.split(".")


def warm_start(model: torch.nn.Module, init_uri: str, run: dict, storage_options=None) -> dict:
    """Copy `init_uri`'s weights into `model` (see the module docstring); `run` holds the new
    run's arch and preprocess. Returns config.json's `init` record: the checkpoint, the method
    and epochs it came from, and which head tensors start fresh."""
    from pipeline.model.checkpoint import open_checkpoint

    try:
        ck = open_checkpoint(init_uri, storage_options)
    except (BadInput, FileNotFoundError) as exc:
        raise BadInput(f"--init {init_uri}: {exc}") from None
    src = ck.config
    for key in ("arch", "preprocess"):
        if src.get(key) != run.get(key):
            raise BadInput(
                f"--init {init_uri}: its {key} is {src.get(key)!r}, this run's is "
                f"{run.get(key)!r}; a checkpoint can only start a run of the same {key}"
            )
    theirs = ck.build_model("cpu").state_dict()
    ours = model.state_dict()
    fresh = []
    for name, t in ours.items():
        if name in theirs and theirs[name].shape == t.shape:
            continue
        if not in_head(name):
            got = tuple(theirs[name].shape) if name in theirs else "nothing"
            raise BadInput(
                f"--init {init_uri}: its {name} is {got}, this model's is {tuple(t.shape)} "
                "(the backbone must match: same --arch, --widths, --spp, --pmt)"
            )
        fresh.append(name)
    with torch.no_grad():
        for name, t in ours.items():
            if name not in fresh:
                t.copy_(theirs[name])
    return {
        "checkpoint": str(init_uri),
        "method": src.get("method", "ours"),
        "epochs_done": src.get("epochs_done"),
        "weights_sha256": src.get("weights_sha256"),
        "fresh": fresh,
    }
