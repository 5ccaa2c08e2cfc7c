"""Real-valued CNN retrieval peers over a checkpoint's last conv feature map: MAC, R-MAC, MS-R-MAC.

(Tolias, Sicre & Jegou, "Particular object retrieval with integral max-pooling of CNN
activations", ICLR 2016.)

- MAC: the channel-wise global max of the last conv map (C-d), L2-normalised.
- R-MAC: max-pool over square regions on L scales (l = 1..L: side 2 min(H, W) / (l + 1), l
  regions along the short side and as many more along the long side as keeps ~40% overlap; the
  grid of Tolias et al. / cirtorch's `rmac`, region offsets floor(i * step)); each regional vector
  is L2-normalised, optionally PCA-whitened (`Whitening`, learned on the training set) and
  L2-normalised again; the regional vectors are summed and the sum L2-normalised.
- MS-R-MAC: the regional vectors of the maps of the input at several scales (the benchmark uses
  1 and 1/sqrt 2, as Tolias et al. shrink, never enlarge) summed into one R-MAC descriptor.
Descriptors are compared by cosine similarity (dot product of unit vectors).

`conv_batches` runs a checkpoint (pipeline.model.checkpoint.load_checkpoint) once per batch and
returns its last conv map, the hash layer's input (the "penultimate" CNN feature used for the
hashing baselines) and the model's own relaxed codes h.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.model.precision import resolve_amp


def _t(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def _l2n(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


# -- the model side ---------------------------------------------------------------------------


def last_conv_map(model, x: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) output of the conv trunk of a pipeline.model HashNet for inputs x."""
    body = model.body
    z = model.norm(x)
    if hasattr(body, "whiten"):
        z = body.whiten(z)
    return body.features(z)


def head_of(model, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hash-layer input, h) from a last conv map: pooling (SPP) -> PMT -> hidden FCs."""
    body = model.body
    pool = body.spp if hasattr(body, "spp") else body.pool
    feat = body.head.fc(body.pmt(pool(fmap)))
    return feat.float(), body.head.codes(feat)


@torch.no_grad()
def conv_batches(model, x, preprocess=None, batch: int = 500, scales=(1.0,), amp=None):
    """Yield, per batch of dataset images x (NCHW, uint8 photos or float model inputs):
    {"maps": [float32 (b, C, H, W) per scale], "feat": (b, D) hash-layer input, "h": (b, bits)}.

    Scale s resizes the inputs by s (bilinear, antialiased when shrinking) before the trunk; the
    hash-layer input and h come from scale 1 (which must be among `scales`). amp: bf16 autocast
    (None: where bf16 is native, `pipeline.model.precision`).
    """
    from pipeline.model.preprocess import inputs_of

    if 1.0 not in [float(s) for s in scales]:
        raise ValueError("scales must include 1.0")
    model.eval()
    amp = resolve_amp(amp, "cpu")
    xt = _t(x)
    for i in range(0, len(xt), batch):
        xb = inputs_of(xt[i : i + batch], preprocess).contiguous(memory_format=torch.channels_last)
        out = {"maps": []}
        for s in scales:
            s = float(s)
            if s == 1.0:
                v = xb
            else:
                size = max(8, int(round(xb.shape[-1] * s)))
                v = F.interpolate(xb, size=(size, size), mode="bilinear", antialias=s < 1)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                fmap = last_conv_map(model, v)
                if s == 1.0:
                    feat, h = head_of(model, fmap)
                    out["feat"], out["h"] = feat.float(), h.float()
            out["maps"].append(fmap.float().contiguous())
        yield out


# -- descriptors --------------------------------------------------------------------------------


def mac(fmap) -> np.ndarray:
    """(n, C) L2-normalised channel-wise global max of (n, C, H, W) maps."""
    return _l2n(_t(fmap).float().amax(dim=(2, 3))).numpy()


def _offsets(size: int, wl: int, n: int) -> list[int]:
    if n <= 1:
        return [0]
    step = (size - wl) / (n - 1)
    return [int(math.floor(i * step)) for i in range(n)]


def rmac_regions(H: int, W: int, L: int = 3, overlap: float = 0.4) -> list[tuple]:
    """R-MAC regions (y, x, h, w) of an H x W map on scales l = 1..L (Tolias et al.'s grid)."""
    w = min(H, W)
    wd = hd = 0
    if H != W:
        steps = np.arange(2, 8)
        b = (max(H, W) - w) / (steps - 1)
        extra = int(np.argmin(np.abs((w * w - w * b) / (w * w) - overlap))) + 1
        if H < W:
            wd = extra
        else:
            hd = extra
    regions = []
    for l in range(1, int(L) + 1):
        wl = int(math.floor(2 * w / (l + 1)))
        if wl < 1:
            continue
        for y in _offsets(H, wl, l + hd):
            for x in _offsets(W, wl, l + wd):
                regions.append((y, x, wl, wl))
    return regions


def mirror_regions(regions, W: int):
    """The regions of a horizontally flipped map: x -> W - x - w."""
    return [(y, W - x - w, h, w) for (y, x, h, w) in regions]


def regional_vectors(fmap, L: int = 3, regions=None) -> torch.Tensor:
    """(n, R, C) L2-normalised max-pooled regional vectors of (n, C, H, W) maps."""
    f = _t(fmap).float()
    H, W = f.shape[-2:]
    regions = rmac_regions(H, W, L) if regions is None else regions
    vs = [f[:, :, y : y + h, x : x + w].amax(dim=(2, 3)) for (y, x, h, w) in regions]
    return _l2n(torch.stack(vs, 1))


class Whitening:
    """PCA-whitening learned on (regional) vectors: v -> (v - mean) P diag(1/sqrt(eig)), L2n."""

    def __init__(self, mean: np.ndarray, P: np.ndarray):
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.P = torch.as_tensor(P, dtype=torch.float32)

    @classmethod
    def fit(cls, vectors, dim: int | None = None, eps: float = 1e-6) -> Whitening:
        V = np.asarray(_t(vectors).reshape(-1, _t(vectors).shape[-1]), np.float64)
        mean = V.mean(0)
        cov = np.cov(V - mean, rowvar=False)
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1][: dim or V.shape[1]]
        P = evecs[:, order] / np.sqrt(np.maximum(evals[order], 0) + eps * evals.max())
        return cls(mean, P)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return _l2n((_t(v).float() - self.mean) @ self.P)


def aggregate(regional, whitening: Whitening | None = None) -> np.ndarray:
    """R-MAC from (n, R, C) regional vectors: [whiten each] -> sum over regions -> L2n."""
    r = _t(regional).float()
    if whitening is not None:
        r = whitening(r)
    return _l2n(r.sum(1)).numpy()


def rmac(fmap, L: int = 3, whitening: Whitening | None = None, regions=None) -> np.ndarray:
    """(n, C) R-MAC descriptors of (n, C, H, W) maps."""
    return aggregate(regional_vectors(fmap, L, regions), whitening)
