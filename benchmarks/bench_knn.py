"""k-NN benchmark: kernels.hamming_knn against faiss IndexBinaryFlat, same data, same thread count.

    .venv/bin/python benchmarks/bench_knn.py                     # 1M x 1000, k=100; 64/48/256 bits
    .venv/bin/python benchmarks/bench_knn.py --n 100000 --q 100  # quick smoke run
    .venv/bin/python benchmarks/bench_knn.py --repeat 5 --json   # + benchmarks/results/knn-<date>/

Prints, per code length, comparisons per second (queries x database / seconds) for both, their
ratio, and checks that the distances are identical. The first call's time (compile, or loading
the numba cache) is reported separately and excluded from the throughput.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _record  # noqa: E402
import numba  # noqa: E402
from _timing import best_of  # noqa: E402

from kernels import hamming_knn  # noqa: E402


def random_codes(rng, n, nbits):
    words = (nbits + 63) // 64
    x = rng.integers(0, 2**63, (n, words), dtype=np.int64).view(np.uint64)
    x = x ^ (rng.integers(0, 2, (n, words), dtype=np.int64).view(np.uint64) << np.uint64(63))
    if nbits % 64:
        x[:, -1] &= np.uint64((1 << (nbits % 64)) - 1)
    return x


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="database codes")
    p.add_argument("--q", type=int, default=1000, help="queries")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--bits", default="64,48,256", help="comma-separated code lengths")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per method (best is kept)")
    p.add_argument("--threads", type=int, default=0, help="threads (0: numba's default)")
    p.add_argument("--no-faiss", action="store_true", help="skip the faiss peer")
    p.add_argument("--seed", type=int, default=0)
    _record.add_json_argument(p, "knn")
    a = p.parse_args(argv)
    if a.threads:
        numba.set_num_threads(a.threads)
    threads = numba.get_num_threads()
    faiss = None
    if not a.no_faiss:
        import faiss

        faiss.omp_set_num_threads(threads)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    hamming_knn(random_codes(rng, 20, 64), random_codes(rng, 100, 64), 5)
    first = time.perf_counter() - t0
    print(f"threads={threads} n={a.n} q={a.q} k={a.k}")
    print(f"first call (compile or numba cache load): {first:.2f} s")
    results = {"threads": threads, "n": a.n, "q": a.q, "k": a.k, "first_call_s": first, "runs": []}
    for nbits in [int(b) for b in a.bits.split(",")]:
        X = random_codes(rng, a.n, nbits)
        Q = random_codes(rng, a.q, nbits)
        hamming_knn(Q[:1], X[:1000], a.k)  # compile for this word count
        t, (D, I) = best_of(lambda Q=Q, X=X: hamming_knn(Q, X, a.k), a.repeat)
        cps = a.q * a.n / t
        row = {"bits": nbits, "ours_s": t, "ours_cmp_per_s": cps}
        line = f"{nbits:4d} bits  kernels {t:7.3f} s {cps / 1e9:6.2f} Gcmp/s"
        if faiss is not None:
            index = faiss.IndexBinaryFlat(64 * X.shape[1])
            index.add(X.view(np.uint8))
            qb = Q.view(np.uint8)
            tf, (d_f, i_f) = best_of(lambda qb=qb, index=index: index.search(qb, a.k), a.repeat)
            same_d = bool(np.array_equal(D, d_f))
            same_i = float(np.mean(np.equal(I, i_f)))
            assert same_d, "distances differ from faiss"
            fcps = a.q * a.n / tf
            row.update(faiss_s=tf, faiss_cmp_per_s=fcps, ratio=tf / t, same_distances=same_d)
            row["same_indices_frac"] = same_i
            line += (
                f" | faiss {tf:7.3f} s {fcps / 1e9:6.2f} Gcmp/s | ratio {tf / t:5.2f}x"
                f" | distances identical: {same_d}, indices identical: {same_i:.4f}"
            )
        print(line, flush=True)
        results["runs"].append(row)
    if faiss is not None:
        results["faiss"] = faiss.__version__
    results["numba"] = numba.__version__
    results["numpy"] = np.__version__
    print(json.dumps(results))
    _record.write(a.json, results)


if __name__ == "__main__":
    main()
