"""Index-tie MAP, old kernel against new, side by side in one run.

    .venv/bin/python benchmarks/bench_map_index.py                      # 1,000 x 10M x 64 bits
    .venv/bin/python benchmarks/bench_map_index.py --threads 1 --repeat 3
    .venv/bin/python benchmarks/bench_map_index.py --n 1000000 --q 100  # quick
    .venv/bin/python benchmarks/bench_map_index.py --json   # + benchmarks/results/map-index-<date>/

Data: 10 classes (--classes), one random centre per class, each code its class centre with every
bit flipped with probability 1/4 (so distances cluster: ~24 within a class, ~32 across), plus 5%
exact duplicates of other items: many ties. Integer labels.

Timed, old (benchmarks/_map_index_before.py, the frozen previous code) and new (kernels):

* ``whole``: average_precision(..., ties="index") over the whole ranking (the API behind
  mean_average_precision); end to end, label handling and histograms included.
* ``partial``: the sharded second pass of pipeline/codes/search.py::evaluate_map:
  ap_index_partial per shard (--shards) with running offsets; the shards' histograms are
  computed once, untimed.
* ``ceiling``: a popcount-only pass over the same pairs (every popcount(q ^ x), summed per query),
  the floor of any exact kernel here.

Both versions' APs (and partial sums) must be bit-identical; the script exits 1 otherwise.
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _map_index_before as before  # noqa: E402
import _record  # noqa: E402
import numba  # noqa: E402
from _timing import interleaved  # noqa: E402
from numba import njit, prange  # noqa: E402

import kernels  # noqa: E402
from kernels._bits import popcount  # noqa: E402
from kernels._layout import word_major  # noqa: E402


@njit(cache=True, parallel=True)
def popcount_pass(Q, XT):
    """Sum over items of popcount(q ^ x) per query (word-major XT), 32 queries per 4,096-item
    chunk, as the new kernel blocks them."""
    nq, W = Q.shape
    n = XT.shape[1]
    out = np.zeros(nq, np.int64)
    for b in prange((nq + 31) // 32):
        for c0 in range(0, n, 4096):
            nb = min(n, c0 + 4096) - c0
            for qi in range(b * 32, min(nq, b * 32 + 32)):
                s = 0
                for w in range(W):
                    q = Q[qi, w]
                    xs = XT[w]
                    for j in range(nb):
                        s += popcount(q ^ xs[np.uint64(c0 + j)])
                out[qi] += s
    return out


def make_data(n, q, nbits, classes, seed=0):
    """Clustered codes with duplicates (see the module notes): (Q, X, ql, dl)."""
    rng = np.random.default_rng(seed)
    W = (nbits + 63) // 64
    mask = np.full(W, np.uint64(0xFFFFFFFFFFFFFFFF))
    if nbits % 64:
        mask[-1] = np.uint64((1 << (nbits % 64)) - 1)
    centres = rng.integers(0, 1 << 64, (classes, W), dtype=np.uint64, endpoint=False)

    def draw(m):
        lab = rng.integers(0, classes, m)
        flips = rng.integers(0, 1 << 64, (m, W), dtype=np.uint64, endpoint=False)
        flips &= rng.integers(0, 1 << 64, (m, W), dtype=np.uint64, endpoint=False)
        return (centres[lab] ^ flips) & mask, lab

    X, dl = draw(n)
    Q, ql = draw(q)
    k = n // 20
    src, dst = rng.integers(0, n, k), rng.integers(0, n, k)
    X[dst], dl[dst] = X[src], dl[src]
    return Q, X, ql, dl


def shard_bounds(n, shards):
    b = np.linspace(0, n, shards + 1).astype(np.int64)
    return list(zip(b[:-1], b[1:], strict=True))


def partial_pass(partial, Q, X, ql, dl, bounds, hists):
    """evaluate_map's second pass: per shard, the partial sums with running offsets."""
    A = sum(h[0] for h in hists)
    R = sum(h[1] for h in hists)
    before_a = np.cumsum(A, axis=1) - A
    before_r = np.cumsum(R, axis=1) - R
    num = np.zeros(len(Q))
    for (a, b), (ha, hr) in zip(bounds, hists, strict=True):
        num += partial(Q, X[a:b], ql, dl[a:b], before_a, before_r)
        before_a = before_a + ha
        before_r = before_r + hr
    return num


def warm_up(bits):
    Q, X, ql, dl = make_data(3000, 5, bits, 3, seed=1)
    zeros = np.zeros((5, 64 * Q.shape[1] + 1), np.int64)
    for mod in (before, kernels):
        mod.average_precision(Q, X, ql, dl)
        mod.ap_index_partial(Q, X, ql, dl, zeros, zeros)
    popcount_pass(Q, word_major(X))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--q", type=int, default=1000)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    ap.add_argument("--repeat", type=int, default=3)
    _record.add_json_argument(ap, "map-index")
    args = ap.parse_args()
    numba.set_num_threads(args.threads)
    warm_up(args.bits)
    t0 = time.perf_counter()
    Q, X, ql, dl = make_data(args.n, args.q, args.bits, args.classes)
    print(
        f"{args.q} queries x {args.n} codes of {args.bits} bits, {args.classes} classes, "
        f"{args.shards} shard(s), {numba.get_num_threads()} thread(s), best/median of "
        f"{args.repeat} (data {time.perf_counter() - t0:.1f} s)"
    )
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {_record.cpu_model()}")
    ok = True
    XT = word_major(X)
    (c,) = interleaved([lambda: popcount_pass(Q, XT)], args.repeat)
    print(f"ceiling  popcount-only {c[0]:8.3f} s / {c[1]:8.3f} s")
    figures = {
        **{k: getattr(args, k) for k in ("n", "q", "bits", "classes", "shards", "repeat")},
        "threads": numba.get_num_threads(),
        "ceiling_s": {"best": c[0], "median": c[1]},
    }
    rows = [("whole", lambda m: lambda: m.average_precision(Q, X, ql, dl))]
    bounds = shard_bounds(args.n, args.shards)
    hists = [kernels.distance_histograms(Q, X[a:b], ql, dl[a:b]) for a, b in bounds]
    rows.append(
        ("partial", lambda m: lambda: partial_pass(m.ap_index_partial, Q, X, ql, dl, bounds, hists))
    )
    for name, make in rows:
        old, new = interleaved([make(before), make(kernels)], args.repeat)
        same = np.array_equal(old[2], new[2])
        ok &= same
        print(
            f"{name:8s} old {old[0]:8.3f} s / {old[1]:8.3f} s   new {new[0]:8.3f} s / "
            f"{new[1]:8.3f} s   ratio {old[0] / new[0]:5.2f}x / {old[1] / new[1]:5.2f}x   "
            f"bit-identical {same}"
        )
        figures[name] = {
            "old_s": {"best": old[0], "median": old[1]},
            "new_s": {"best": new[0], "median": new[1]},
            "speedup": {"best": old[0] / new[0], "median": old[1] / new[1]},
            "bit_identical": bool(same),
        }
    _record.write(args.json, figures)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
