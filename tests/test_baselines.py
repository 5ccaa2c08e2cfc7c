"""Peer baselines (pipeline.baselines): hashing methods, CNN descriptors, local peers, GIST, MAP."""

import numpy as np
import pytest
import torch

from kernels import mean_average_precision, pack_codes
from pipeline.baselines import HASHERS, SUPERVISED, fit_hasher, itq, lsh, sh
from pipeline.baselines.cnn import (
    Whitening,
    aggregate,
    conv_batches,
    head_of,
    last_conv_map,
    mac,
    mirror_regions,
    regional_vectors,
    rmac,
    rmac_regions,
)
from pipeline.baselines.gist import gist
from pipeline.baselines.local import VLAD, HammingEmbedding, local_descriptors
from pipeline.baselines.ranking import average_precision_scores, cosine_map
from pipeline.errors import BadInput

torch.set_num_threads(1)


def _clusters(n, d=24, classes=4, sep=1.2, seed=0):
    """Classes differ in 2 of d dims (means on a circle), plus isotropic noise everywhere."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    ang = 2 * np.pi * y / classes
    X = rng.standard_normal((n, d))
    X[:, 0] += sep * 3 * np.cos(ang)
    X[:, 1] += sep * 3 * np.sin(ang)
    return X, y


def _hamming(qc, dc):
    return np.bitwise_count(qc[:, None, :] ^ dc[None, :, :]).sum(-1)


# -- hashing baselines --------------------------------------------------------------------------


def test_itq_rotation_orthogonal_and_loss_decreases():
    X, _ = _clusters(600, d=40)
    h = itq.fit(X, bits=16, seed=3, n_iter=30)
    R = h.R
    assert R.shape == (16, 16)
    np.testing.assert_allclose(R.T @ R, np.eye(16), atol=1e-10)
    loss = h.loss_history
    assert len(loss) == 31
    assert np.all(np.diff(loss) <= 1e-9 * loss[0]), np.diff(loss).max()
    assert loss[-1] < 0.97 * loss[0]  # the rotation does work
    # the loss reported is the quantisation loss of the fitted projection
    V = (X - h.mean) @ h.P
    assert itq.quantization_loss(V, R) == pytest.approx(loss[-1])


def test_lsh_deterministic_and_hamming_tracks_angle():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 32))
    a = lsh.fit(X, bits=256, seed=7, center=False)
    b = lsh.fit(X, bits=256, seed=7, center=False)
    c = lsh.fit(X, bits=256, seed=8, center=False)
    np.testing.assert_array_equal(a.encode(X), b.encode(X))
    assert not np.array_equal(a.encode(X), c.encode(X))
    codes = a.encode(X)
    ham = _hamming(codes[:50], codes).ravel() / 256
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    angle = np.arccos(np.clip(Xn[:50] @ Xn.T, -1, 1)).ravel() / np.pi
    assert np.corrcoef(ham, angle)[0, 1] > 0.9
    assert abs(float(np.mean(ham - angle))) < 0.02  # E[hamming / bits] = theta / pi


def test_sh_spends_its_bits_on_the_long_axis():
    # a 10 x 1 box: the lowest-frequency eigenfunctions are cos(k pi x / 10), k = 1, 2, 3, all
    # along x (the first eigenfunction along y, k = 1 there, has a higher frequency than k = 3)
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (4000, 2)) * [10.0, 1.0]
    h = sh.fit(X, bits=3)
    assert (h.modes[:, 1] == 0).all() and sorted(h.modes[:, 0]) == [1, 2, 3]
    b = h.project(X) > 0
    k = h.modes[:, 0].astype(int)
    for j in range(3):  # bit j is 1 on the bands where cos(k pi x / 10) > 0 (up to PCA's sign)
        u = X[:, 0] / 10.0
        expect = np.cos(k[j] * np.pi * u) > 0
        agree = (b[:, j] == expect).mean()
        flipped = (b[:, j] == (np.cos(k[j] * np.pi * (1 - u)) > 0)).mean()
        assert max(agree, flipped) > 0.97, (j, agree, flipped)


def test_ksh_beats_lsh_on_separable_labelled_set():
    Xtr, ytr = _clusters(400, seed=1)
    Xq, yq = _clusters(100, seed=2)
    Xdb, ydb = _clusters(1000, seed=3)
    maps = {}
    for name in ("lsh", "ksh"):
        h = fit_hasher(
            name, Xtr, ytr, bits=16, seed=0, **({"n_anchors": 100} if name == "ksh" else {})
        )
        maps[name] = mean_average_precision(h.encode(Xq), h.encode(Xdb), yq, ydb)
    assert maps["ksh"] > maps["lsh"] + 0.3, maps
    assert maps["ksh"] > 0.8, maps


@pytest.mark.parametrize("name", sorted(HASHERS))
@pytest.mark.parametrize("bits", [12, 64, 70])
def test_packed_codes_follow_design_layout(name, bits):
    X, y = _clusters(300, d=80)
    # few ITQ iterations: numpy's threaded OpenBLAS crawls on small SVDs when the cores are busy
    opts = {"ksh": {"n_anchors": 50, "max_iter": 20}, "itq": {"n_iter": 3}}.get(name, {})
    h = fit_hasher(name, X, y, bits=bits, seed=0, **opts)
    Z = h.project(X[:40])
    codes = h.encode(X[:40])
    assert Z.shape == (40, bits)
    assert codes.dtype == np.uint64 and codes.shape == (40, (bits + 63) // 64)
    # DESIGN.md: packbits(bits, little) zero-padded to 8 bytes, viewed as <u8; bit = value > 0
    raw = np.packbits(Z > 0, axis=1, bitorder="little")
    padded = np.zeros((40, codes.shape[1] * 8), np.uint8)
    padded[:, : raw.shape[1]] = raw
    np.testing.assert_array_equal(codes, padded.view("<u8"))
    np.testing.assert_array_equal(codes, pack_codes(Z))
    if bits % 64:
        assert not np.any(codes[:, -1] >> np.uint64(bits % 64))  # unused high bits are zero
    ones = np.bitwise_count(codes).sum(1)
    assert ones.min() < ones.max()  # not a constant code


def test_registry_errors():
    X, y = _clusters(50)
    assert frozenset({"ksh"}) == SUPERVISED
    with pytest.raises(BadInput, match="supervised"):
        fit_hasher("ksh", X, bits=8)
    with pytest.raises(BadInput, match="unknown"):
        fit_hasher("nope", X, bits=8)
    with pytest.raises(BadInput, match="at most"):
        fit_hasher("itq", X, bits=30)  # 24-d features
    h = fit_hasher("pcah", X, bits=8)
    with pytest.raises(BadInput, match="fitted on 24-d"):
        h.encode(X[:, :10])


# -- real-valued MAP ----------------------------------------------------------------------------


def test_score_map_matches_kernels_index_ties():
    rng = np.random.default_rng(0)
    db = pack_codes(rng.random((500, 12)) > 0.5)  # 12 bits: many tied distances
    q = pack_codes(rng.random((30, 12)) > 0.5)
    ql, dl = rng.integers(0, 5, 30), rng.integers(0, 5, 500)
    aps = average_precision_scores(-_hamming(q, db).astype(float), ql, dl)
    expect = mean_average_precision(q, db, ql, dl, ties="index")
    assert aps.mean() == pytest.approx(expect, abs=1e-12)
    # hand example: ranking r, n, r -> AP = (1/1 + 2/3) / 2; no relevant item -> 0
    s = np.array([[3.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    got = average_precision_scores(s, np.array([0, 9]), np.array([0, 1, 0]))
    np.testing.assert_allclose(got, [(1 + 2 / 3) / 2, 0.0])


def test_cosine_map_perfect_when_classes_are_directions():
    rng = np.random.default_rng(1)
    dirs = np.eye(6)[:3]
    yq, yd = rng.integers(0, 3, 20), rng.integers(0, 3, 200)
    q = dirs[yq] * rng.uniform(0.5, 2, (20, 1))
    d = dirs[yd] * rng.uniform(0.5, 2, (200, 1))
    assert cosine_map(q, d, yq, yd) == pytest.approx(1.0)


# -- CNN descriptors ----------------------------------------------------------------------------


def test_mac_rmac_shapes_and_regions():
    f = torch.rand(5, 16, 7, 7)
    assert mac(f).shape == (5, 16)
    assert len(rmac_regions(7, 7, 3)) == 1 + 4 + 9
    assert rmac_regions(3, 3, 3) == [(0, 0, 3, 3)] + [
        (y, x, 2, 2) for y in (0, 1) for x in (0, 1)
    ] + [(y, x, 1, 1) for y in range(3) for x in range(3)]
    for H, W in [(7, 7), (4, 6), (9, 5)]:
        regs = rmac_regions(H, W, 3)
        assert all(min(y, x) >= 0 and y + h <= H and x + w <= W for y, x, h, w in regs)
    r = rmac(f)
    assert r.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), 1, atol=1e-5)
    # L = 1 on a square map is one region, the whole map: R-MAC = MAC
    np.testing.assert_allclose(rmac(f, L=1), mac(f), atol=1e-6)
    assert regional_vectors(f).shape == (5, 14, 16)


@pytest.mark.parametrize("H,W", [(3, 3), (7, 7), (5, 5), (4, 6)])
def test_rmac_of_flipped_map(H, W):
    g = torch.Generator().manual_seed(H * 10 + W)
    f = torch.rand(3, 8, H, W, generator=g)
    ff = f.flip(-1)
    regs = rmac_regions(H, W, 3)
    # always: R-MAC of the flipped map = R-MAC of the map over the mirrored regions
    np.testing.assert_allclose(rmac(ff), rmac(f, regions=mirror_regions(regs, W)), atol=1e-6)
    # MAC is invariant to any spatial permutation; R-MAC only to what maps its grid to itself
    perm = torch.randperm(H * W, generator=g)
    shuffled = f.reshape(3, 8, -1)[..., perm].reshape(3, 8, H, W)
    np.testing.assert_allclose(mac(shuffled), mac(f), atol=1e-7)
    assert np.abs(rmac(shuffled) - rmac(f)).max() > 1e-3
    if sorted(mirror_regions(regs, W)) == sorted(regs):  # a mirror-symmetric grid: invariant
        np.testing.assert_allclose(rmac(ff), rmac(f), atol=1e-6)
    if (H, W) in [(3, 3), (7, 7)]:  # the compact net's map sizes at 32 and 64 px
        assert sorted(mirror_regions(regs, W)) == sorted(regs)


def test_whitening_decorrelates_and_aggregates():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((8, 8))
    v = torch.from_numpy((rng.standard_normal((4000, 8)) @ A + 3).astype(np.float32))
    w = Whitening.fit(v)
    z = (v - w.mean) @ w.P  # before the final L2
    np.testing.assert_allclose(np.cov(z.numpy(), rowvar=False), np.eye(8), atol=0.05)
    out = aggregate(v[:30].reshape(5, 6, 8), w)
    assert out.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_head_of_reproduces_model_forward():
    from pipeline.model.archs import build_model

    torch.manual_seed(0)
    m = build_model("compact", 12, 4, in_channels=1, input_size=32).eval()
    x = torch.randn(6, 1, 32, 32)
    with torch.no_grad():
        h_ref, _ = m(x)
        fmap = last_conv_map(m, x)
        feat, h = head_of(m, fmap)
    assert fmap.shape == (6, 128, 3, 3)
    assert feat.shape == (6, 128 * 5)
    torch.testing.assert_close(h, h_ref)
    out = list(conv_batches(m, x.numpy(), batch=4, scales=(1.0, 1.5), amp=False))
    assert [len(o["h"]) for o in out] == [4, 2]
    torch.testing.assert_close(torch.cat([o["h"] for o in out]), h_ref, atol=1e-5, rtol=0)
    assert out[0]["maps"][1].shape == (4, 128, 5, 5)  # 48 px input


# -- local descriptors --------------------------------------------------------------------------


def test_vlad_and_he_find_the_same_image():
    rng = np.random.default_rng(0)
    maps = rng.random((60, 16, 4, 4)).astype(np.float32) ** 3
    d = local_descriptors(maps)
    assert d.shape == (60, 16, 16)
    v = VLAD.fit(d, k=8, seed=0)
    enc = v.encode(d)
    assert enc.shape == (60, 8 * 16)
    np.testing.assert_allclose(np.linalg.norm(enc, axis=1), 1, atol=1e-5)
    # noisy copies of the first 10 images retrieve their originals first
    q = local_descriptors(maps[:10] + 0.02 * rng.random((10, 16, 4, 4)).astype(np.float32))
    assert ((v.encode(q) @ enc.T).argmax(1) == np.arange(10)).all()
    he = HammingEmbedding.fit(d, k=8, n_bits=16, seed=0)
    db = he.encode(d)
    assert db[0].shape == (60, 16) and db[1].dtype == np.uint64
    blocks = list(he.scores(he.encode(q), db, ht=4, sigma=4.0, chunk=4))
    S = np.concatenate([b for _, b in blocks])
    assert [s for s, _ in blocks] == [0, 4, 8]
    assert (S.argmax(1) == np.arange(10)).all()


# -- GIST ---------------------------------------------------------------------------------------


def test_gist_dimension_and_orientation():
    x = np.arange(32)
    vertical = np.tile(np.sin(2 * np.pi * x / 4.0), (32, 1))  # varies along x only
    horizontal = vertical.T
    g = gist(np.stack([vertical, horizontal]) * 100 + 100)
    assert g.shape == (2, 512) and np.isfinite(g).all()
    energy = g.reshape(2, 4, 8, 16).mean(-1)  # (image, scale, orientation)
    s = int(energy[0].max(1).argmax())  # the scale that responds
    assert int(energy[0, s].argmax()) == 0  # orientation 0 looks along fx
    assert int(energy[1, s].argmax()) == 4  # pi/2 later
    # colour input: channels-first and channels-last give the same grey GIST
    rgb = np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32)).astype(np.uint8)
    np.testing.assert_allclose(gist(rgb), gist(rgb.transpose(0, 2, 3, 1)), rtol=1e-5)


# -- query time (Table 5) --------------------------------------------------------------------------


def test_query_time_rankers_give_the_full_ranking_of_each_method():
    from pipeline.baselines.query_time import rank_codes, rank_cosine, rank_he, time_queries

    rng = np.random.default_rng(0)
    bits = rng.random((200, 24)) < 0.5
    qc, dc = pack_codes(bits[:5]), pack_codes(bits)
    d = _hamming(qc, dc)
    rank = rank_codes(qc, dc)
    for i in range(5):  # every database item, by (distance, index)
        np.testing.assert_array_equal(rank(i), np.argsort(d[i], kind="stable"))
    X = rng.normal(size=(200, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    rank = rank_cosine(X[:5], X)
    for i in range(5):
        np.testing.assert_array_equal(rank(i), np.argsort(-(X @ X[i]), kind="stable"))
    loc = local_descriptors(rng.random((30, 8, 3, 3)).astype(np.float32))
    he = HammingEmbedding.fit(loc, k=4, n_bits=16, seed=0)
    q, db = he.encode(loc[:3]), he.encode(loc)
    S = next(iter(he.scores(q, db)))[1]
    rank = rank_he(he, q, db)
    for i in range(3):
        np.testing.assert_array_equal(rank(i), np.argsort(-S[i], kind="stable"))
    t = time_queries(rank, 3)
    assert t["queries"] == 3 and t["ms_per_query"] > 0
    with pytest.raises(ValueError):
        time_queries(rank, 0)
