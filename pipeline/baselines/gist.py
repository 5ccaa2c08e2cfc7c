"""A GIST descriptor (Oliva & Torralba, IJCV 2001), after the authors' LMgist.m, in torch FFTs.

The classic hashing papers' CIFAR-10 features are 512-d GIST: 4 scales x 8 orientations of Gabor
filters, energies averaged over a 4 x 4 grid. We cannot ship those precomputed vectors, so this is
our re-implementation (the "GIST" rows of benchmarks/RESULTS.md):
- grey image (mean of the channels), rescaled to [0, 255] (min-max, per image, as LMgist does);
- prefiltering (`prefilt`, fc = 4): log(1 + I), symmetric padding of 5 px, subtract a Gaussian
  low-pass (whitening), divide by 0.2 + the local standard deviation (contrast normalisation);
- Gabor transfer functions of `createGabor` on a grid of the image size + 2 x `pad`, the image
  padded symmetrically by `pad` (LMgist's boundary extension: 32 px for its 256 px images; we use
  4 px at 32 px, 8 px at 64 px, i.e. 1/8 of the side, to keep 60,000 images near a minute);
- |IFFT(FFT(image) G)| cropped back to the image, averaged over a 4 x 4 grid of blocks.
Output: (n, sum(orientations) * blocks^2) float32 (512 for the defaults).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def gabor_bank(n: int, orientations=(8, 8, 8, 8)) -> torch.Tensor:
    """LMgist createGabor: (filters, n, n) transfer functions in FFT (unshifted) layout."""
    params = []
    for i, o in enumerate(orientations):
        for j in range(o):
            params.append((0.35, 0.3 / 1.85**i, 16.0 * o * o / 32.0**2, math.pi / o * j))
    f = torch.arange(-n // 2, n // 2, dtype=torch.float64)
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    fr = torch.fft.fftshift(torch.sqrt(fx**2 + fy**2))
    t = torch.fft.fftshift(torch.atan2(fy, fx))
    G = []
    for p1, p2, p3, p4 in params:
        tr = t + p4
        tr = tr + 2 * math.pi * (tr < -math.pi) - 2 * math.pi * (tr > math.pi)
        G.append(torch.exp(-10 * p1 * (fr / n / p2 - 1) ** 2 - 2 * p3 * math.pi * tr**2))
    return torch.stack(G).float()


def _sym_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Symmetric (MATLAB 'symmetric': edge repeated) padding of (n, H, W)."""
    if p <= 0:
        return x
    top, bottom = x[:, :p].flip(1), x[:, -p:].flip(1)
    x = torch.cat([top, x, bottom], 1)
    left, right = x[:, :, :p].flip(2), x[:, :, -p:].flip(2)
    return torch.cat([left, x, right], 2)


def prefilt(img: torch.Tensor, fc: float = 4.0, w: int = 5) -> torch.Tensor:
    """LMgist prefilt on (n, H, W) images in [0, 255]."""
    s1 = fc / math.sqrt(math.log(2))
    x = torch.log(img + 1)
    x = _sym_pad(x, w)
    H, W = x.shape[1:]
    n = max(H, W)
    n += n % 2
    if n > H or n > W:  # MATLAB pads 'post' to a square, even size
        x = F.pad(x[:, None], (0, n - W, 0, n - H), mode="reflect")[:, 0]
    f = torch.arange(-n // 2, n // 2, dtype=torch.float32)
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    gf = torch.fft.fftshift(torch.exp(-(fx**2 + fy**2) / s1**2))
    out = x - torch.fft.ifft2(torch.fft.fft2(x) * gf).real
    localstd = torch.sqrt(torch.fft.ifft2(torch.fft.fft2(out**2) * gf).abs())
    out = out / (0.2 + localstd)
    return out[:, w : H - w, w : W - w]


def _block_means(x: torch.Tensor, blocks: int) -> torch.Tensor:
    """(n, f, H, W) -> (n, f, blocks, blocks): means over LMgist's downN grid."""
    H, W = x.shape[-2:]
    ys = np.fix(np.linspace(0, H, blocks + 1)).astype(int)
    xs = np.fix(np.linspace(0, W, blocks + 1)).astype(int)
    rows = [x[..., ys[i] : ys[i + 1], :] for i in range(blocks)]
    return torch.stack(
        [
            torch.stack([r[..., xs[j] : xs[j + 1]].mean(dim=(-2, -1)) for j in range(blocks)], -1)
            for r in rows
        ],
        -2,
    )


@torch.no_grad()
def gist(
    images,
    orientations=(8, 8, 8, 8),
    blocks: int = 4,
    pad: int | None = None,
    fc: float = 4.0,
    chunk: int = 250,
) -> np.ndarray:
    """GIST of (n, H, W) grey or (n, C, H, W) / (n, H, W, 3) images (any numeric dtype).

    Channels-first input is recognised by a leading axis of size 1 or 3 after n; a 4-D array
    with 3 last is taken as channels-last.
    """
    x = torch.as_tensor(np.asarray(images)).float()
    if x.ndim == 4:
        x = x.mean(-1) if x.shape[-1] == 3 and x.shape[1] != 3 else x.mean(1)
    if x.ndim != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"gist needs square images (n, H, W), got {tuple(x.shape)}")
    size = x.shape[1]
    pad = max(4, size // 8) if pad is None else int(pad)
    G = gabor_bank(size + 2 * pad, orientations)
    out = []
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        lo = xb.amin(dim=(1, 2), keepdim=True)
        xb = xb - lo
        hi = xb.amax(dim=(1, 2), keepdim=True)
        xb = 255.0 * xb / torch.where(hi > 0, hi, torch.ones_like(hi))
        xb = _sym_pad(prefilt(xb, fc), pad)
        spec = torch.fft.fft2(xb)
        resp = torch.fft.ifft2(spec[:, None] * G[None]).abs()
        resp = resp[:, :, pad : pad + size, pad : pad + size]
        out.append(_block_means(resp, blocks).reshape(len(xb), -1))
    if not out:
        return np.zeros((0, sum(orientations) * blocks * blocks), np.float32)
    return torch.cat(out).numpy().astype(np.float32)
