"""Index-tie MAP, old kernel against new, side by side in one run.

    .venv/bin/python benchmarks/bench_map_index.py                      # 1,000 x 10M x 64 bits
    .venv/bin/python benchmarks/bench_map_index.py --threads 1 --repeat 3
    .venv/bin/python benchmarks/bench_map_index.py --n 1000000 --q 100  # quick
    .venv/bin/python benchmarks/bench_map_index.py --json   # + benchmarks/results/map-index-<date>/
    .venv/bin/python benchmarks/bench_map_index.py --n 1000000 --threads 1 --clock cpu  # busy box

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
* ``hist``: distance_histograms alone (new only), the first pass of a two-pass design; with one
  shard, ``partial`` is its second pass (ranks given the offsets), so ``hist + partial`` is what
  the whole path of one-word codes cost before it ran in one pass.
* ``stage``: the one-word one-pass kernel's chunk loop cut after each step (``stage_pass``):
  where its time goes.

Every row runs interleaved with its own ceiling pass, and each new time is given as a fraction
of that ceiling (ceiling time / its time, best and median). ``--clock cpu`` times the process's
CPU time instead of wall time: on a machine busy with other work, with one thread, it leaves out
the spells when other processes held the core. Both versions' APs (and partial sums) must be
bit-identical; the script exits 1 otherwise.
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
from kernels import _index_w1  # noqa: E402
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


@njit(cache=True, parallel=True)
def stage_pass(Q1, X1, ids, qids, stage):
    """The one-word one-pass kernel's chunk loop cut after a stage, to time each step against the
    ceiling: 1 distances as bytes (and the set present); 2 + relevance masks and per-distance
    block counts; 3 + each relevant item's rank, written to a per-chunk buffer (the kernel
    keeps them all). Returns a checksum per query so that nothing is optimised away."""
    nq = Q1.shape[0]
    n = X1.shape[0]
    out = np.zeros(nq, np.int64)
    zero = np.zeros(65, np.int64)
    for bq in prange((nq + 31) // 32):
        q0, q1 = bq * 32, min(nq, bq * 32 + 32)
        run_a = np.zeros((q1 - q0, 65), np.int64)
        d8 = np.empty(_index_w1.CHUNK, np.uint8)
        relm = np.empty(_index_w1.CHUNK // 64, np.uint64)
        before = np.empty(65 * (_index_w1.CHUNK // 64), np.uint16)
        base = np.empty(65, np.int64)
        buf = np.empty(_index_w1.CHUNK, np.int64)
        for c0 in range(0, n, _index_w1.CHUNK):
            nb = min(n, c0 + _index_w1.CHUNK) - c0
            xs = X1[c0 : c0 + nb]
            for qi in range(q0, q1):
                if stage == 1:
                    out[qi] += np.int64(_index_w1._distances(Q1[qi], xs, nb, d8) & np.uint64(1))
                    continue
                nblk = _index_w1._prepare(
                    Q1[qi], xs, nb, ids, c0, qids[qi], zero, run_a[qi - q0], d8, relm, before,
                    base,
                )  # fmt: skip
                if stage == 3:
                    out[qi] += _index_w1._relevant_ranks(d8, relm, nblk, before, base, buf, 0)
        for qi in range(q0, q1):
            out[qi] += run_a[qi - q0, 30]
    return out


def stages(Q, X, ql, dl, run):
    """Times the stages of the one-word one-pass kernel, interleaved with the ceiling; prints and
    returns each as a fraction of the ceiling."""
    qids, ids = _index_w1.dense_ids(ql, dl)
    Q1, X1 = np.ascontiguousarray(Q[:, 0]), X.reshape(-1)
    names = ("distances", "block_counts", "ranks")
    fns = [lambda s=s: stage_pass(Q1, X1, ids, qids, s) for s in (1, 2, 3)]
    c, *res = run(fns)
    out = {"ceiling_s": {"best": c[0], "median": c[1]}}
    for name, r in zip(names, res, strict=True):
        print(f"stage    +{name:12s} {r[0]:8.3f} s / {r[1]:8.3f} s   of ceiling {of_ceiling(c, r)}")
        out[name] = {"s": {"best": r[0], "median": r[1]}, "of_ceiling": fraction(c, r)}
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


def fraction(c, t):
    """{best, median} fraction of the popcount-only pass (its time / the time)."""
    return {"best": c[0] / t[0], "median": c[1] / t[1]}


def of_ceiling(c, t):
    """'best / median' fraction of the popcount-only pass, printed."""
    f = fraction(c, t)
    return f"{f['best']:.3f} / {f['median']:.3f}"


def two_pass(figures):
    """The whole path as it ran before this one-pass kernel: histograms, then the ranks given
    the offsets (``partial`` with one shard). Its fraction of the ceiling combines the two rows'
    fractions (each measured beside its own ceiling): 1 / (1 / hist + 1 / partial)."""
    h, p = figures["hist"]["of_ceiling"], figures["partial"]["of_ceiling"]
    f = {k: 1 / (1 / h[k] + 1 / p[k]) for k in ("best", "median")}
    print(f"two-pass hist + partial   of ceiling {f['best']:.3f} / {f['median']:.3f}")
    return {"of_ceiling": f}


def warm_up(bits):
    Q, X, ql, dl = make_data(3000, 5, bits, 3, seed=1)
    zeros = np.zeros((5, 64 * Q.shape[1] + 1), np.int64)
    for mod in (before, kernels):
        mod.average_precision(Q, X, ql, dl)
        mod.ap_index_partial(Q, X, ql, dl, zeros, zeros)
    kernels.distance_histograms(Q, X, ql, dl)
    popcount_pass(Q, word_major(X))
    if bits <= 64:
        qids, ids = _index_w1.dense_ids(ql, dl)
        for stage in (1, 2, 3):
            stage_pass(np.ascontiguousarray(Q[:, 0]), X.reshape(-1), ids, qids, stage)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--q", type=int, default=1000)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: the process's CPU time (for --threads 1 on a busy machine)",
    )
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
    XT = word_major(X)
    clock = {"wall": time.perf_counter, "cpu": time.process_time}[args.clock]

    def run(fns):  # the ceiling, then fns, interleaved
        return interleaved([lambda: popcount_pass(Q, XT), *fns], args.repeat, clock)

    figures = {
        **{k: getattr(args, k) for k in ("n", "q", "bits", "classes", "shards", "repeat", "clock")},
        "threads": numba.get_num_threads(),
    }
    bounds = shard_bounds(args.n, args.shards)
    hists = [kernels.distance_histograms(Q, X[a:b], ql, dl[a:b]) for a, b in bounds]
    rows = [
        ("whole", lambda m: lambda: m.average_precision(Q, X, ql, dl)),
        (
            "partial",
            lambda m: lambda: partial_pass(m.ap_index_partial, Q, X, ql, dl, bounds, hists),
        ),
    ]
    ok = True
    for name, make in rows:
        c, old, new = run([make(before), make(kernels)])
        same = np.array_equal(old[2], new[2])
        ok &= same
        print(
            f"{name:8s} old {old[0]:8.3f} s / {old[1]:8.3f} s   new {new[0]:8.3f} s / "
            f"{new[1]:8.3f} s   ratio {old[0] / new[0]:5.2f}x / {old[1] / new[1]:5.2f}x   "
            f"bit-identical {same}   ceiling {c[0]:.3f} s / {c[1]:.3f} s, new of ceiling "
            f"{of_ceiling(c, new)}"
        )
        figures[name] = {
            "ceiling_s": {"best": c[0], "median": c[1]},
            "old_s": {"best": old[0], "median": old[1]},
            "new_s": {"best": new[0], "median": new[1]},
            "speedup": {"best": old[0] / new[0], "median": old[1] / new[1]},
            "of_ceiling": fraction(c, new),
            "bit_identical": bool(same),
        }
    c, h = run([lambda: kernels.distance_histograms(Q, X, ql, dl)])
    print(f"hist     new {h[0]:8.3f} s / {h[1]:8.3f} s   of ceiling {of_ceiling(c, h)}")
    figures["hist"] = {
        "ceiling_s": {"best": c[0], "median": c[1]},
        "new_s": {"best": h[0], "median": h[1]},
        "of_ceiling": fraction(c, h),
    }
    figures["two_pass"] = two_pass(figures)
    if args.bits <= 64:
        figures["stages"] = stages(Q, X, ql, dl, run)
    _record.write(args.json, figures)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
