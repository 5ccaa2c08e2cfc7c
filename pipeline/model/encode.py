"""The one encode step: model inputs -> relaxed codes and class log-probabilities.

`encode_inputs` runs under the checkpoint's encode settings (`pipeline.model.settings`: test-time
views and precision). Train's final evaluation, `evaluate`, the benchmarks and ingest's encoder
actors (`pipeline.ingest.encode_actor.HashEncoder`) all call it, so the codes a run measures are
the codes ingest stores (tests/test_encode_parity.py checks this bit for bit).
"""

from __future__ import annotations

import numpy as np

from pipeline.model.settings import encode_settings


def _views(x, views: str):
    """Test-time views with weights: none; + mirror; + mirrors of 1-px translations."""
    import torch

    if views == "none":
        return [(x, 1.0)]
    if views == "mirror":
        return [(x, 0.5), (x.flip(-1), 0.5)]
    s = x.shape[-1]
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    a, b = xp[..., 0:s, 0:s], xp[..., 2 : s + 2, 2 : s + 2]
    return [
        (x, 0.25),
        (x.flip(-1), 0.25),
        (a, 0.125),
        (a.flip(-1), 0.125),
        (b, 0.125),
        (b.flip(-1), 0.125),
    ]


def encode_inputs(model, x, settings: dict, device: str = "cpu"):
    """float32 model inputs (n, C, S, S), NumPy or torch on any device -> (h float32 (n, bits),
    log-probabilities (n, K)) as NumPy arrays.

    The one encode step: eval mode, no grad, channels_last on the CPU, the settings' views
    averaged (h and log-probabilities alike) under the settings' precision. Codes are
    `kernels.pack_codes(h)` (bit = h > 0). A model without a class head (DPSH, DSH: it returns
    logits None) gives log-probabilities None.
    """
    import torch

    s = encode_settings({"encode": settings})
    model.eval()
    dev = torch.device(device)
    with torch.inference_mode():
        if isinstance(x, torch.Tensor):  # preprocessed on the device already (ingest)
            xb = x.to(dev, torch.float32)
        else:
            xb = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).to(dev)
        if dev.type == "cpu":
            xb = xb.contiguous(memory_format=torch.channels_last)
        h_acc, l_acc = 0.0, 0.0
        for v, w in _views(xb, s["views"]):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=s["precision"] == "bf16"):
                h, logits = model(v)
            h_acc = h_acc + w * h.float()
            if logits is not None:
                l_acc = l_acc + w * torch.log_softmax(logits.float(), 1)
        logp = l_acc.cpu().numpy() if logits is not None else None
        return h_acc.cpu().numpy(), logp


def input_shape(config: dict) -> tuple[int, int, int]:
    """(channels, size, size) of the model input, as preprocessing produces it."""
    if "in_channels" in config and "input_size" in config:
        size = int(config["input_size"])
        return int(config["in_channels"]), size, size
    from pipeline.model.preprocess import PreprocessConfig

    pc = PreprocessConfig.from_dict(dict(config["preprocess"]))
    return int(pc.channels), int(pc.size), int(pc.size)


def sync_device(device: str) -> None:
    """Wait for the device's queued work (honest per-stage times on a GPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
