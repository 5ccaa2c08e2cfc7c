"""Where bfloat16 autocast pays: training and feature extraction default to it only there.

On a CPU without AVX512-BF16 or AMX, oneDNN emulates bf16 and a training step of the compact
net runs ~3x slower than in float32 (measured on this project's 2-core Xeon: 34 vs 100 img/s,
benchmarks/RESULTS.md "Training precision"), so "auto" means fp32 there.
"""

from __future__ import annotations

import torch


def bf16_native(device: str | torch.device) -> bool:
    """True where bf16 matmuls and convolutions run in hardware on `device`."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_amp(amp: bool | str | None, device: str | torch.device) -> bool:
    """amp as given (True/False, "on"/"off"), or for None/"auto" whether bf16 is native."""
    if amp in (None, "auto"):
        return bf16_native(device)
    if amp in ("on", "off"):
        return amp == "on"
    return bool(amp)
