"""MAP benchmarks for the kernels.

    .venv/bin/python benchmarks/bench_map.py cifar    # 1,000 x 59,000 codes of 48 bits, 10 classes
    .venv/bin/python benchmarks/bench_map.py scale    # 10,000 x 1,000,000 codes of 64 bits
    .venv/bin/python benchmarks/bench_map.py scale --n 100000 --q 1000   # quick smoke run
    .venv/bin/python benchmarks/bench_map.py cifar --repeat 5 --json     # + a result file under
                                                    # benchmarks/results/map-cifar-<date>/

cifar: kernels.mean_average_precision (ties by index, whole ranking) against the usual NumPy
evaluation (per query: Hamming distances from a dot product of +-1 codes, a stable np.argsort,
cumulative precision), asserting the same MAP.

scale: the throughput (query x item comparisons per second) of the histogram pass
(distance_histograms, all that ties="aware" needs), of MAP with ties="aware" and with ties="index",
against a bare popcount-only pass over the same data written in numba with the same query blocking,
chunking and threads (every query x item popcount, summed per query so it is not optimised away).
--mem adds the peak memory of MAP at two database sizes, each in a fresh process.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _record  # noqa: E402
import numba  # noqa: E402
from _timing import best_of  # noqa: E402
from numba import njit, prange  # noqa: E402

from kernels import (  # noqa: E402
    average_precision,
    distance_histograms,
    mean_average_precision,
    pack_codes,
    unpack_codes,
)
from kernels._bits import popcount  # noqa: E402
from kernels.hist import _CSA_CHUNK, _QB  # noqa: E402


@njit(cache=True, parallel=True)
def popcount_pass(Q1, X1):
    """The ceiling: sum over items of popcount(q ^ x) for every query, blocked like the kernel."""
    nq = Q1.shape[0]
    n = X1.shape[0]
    out = np.zeros(nq, np.int64)
    nqb = (nq + _QB - 1) // _QB
    for b in prange(nqb):
        q0 = b * _QB
        q1 = min(nq, q0 + _QB)
        for c0 in range(0, n, _CSA_CHUNK):
            nb = min(n, c0 + _CSA_CHUNK) - c0
            for qi in range(q0, q1):
                q = Q1[qi]
                s = 0
                for j in range(nb):
                    s += popcount(q ^ X1[np.uint64(c0 + j)])
                out[qi] += s
    return out


def numpy_map(Qbits, Xbits, ql, dl):
    """The usual NumPy evaluation (DPSH/HashNet calc_map style), with a stable sort (index ties)."""
    B = (2.0 * Xbits - 1).astype(np.float32)
    nbits = Xbits.shape[1]
    aps = np.zeros(len(Qbits))
    for i in range(len(Qbits)):
        qb = (2.0 * Qbits[i] - 1).astype(np.float32)
        ham = 0.5 * (nbits - B @ qb)
        order = np.argsort(ham, kind="stable")
        rel = (dl[order] == ql[i]).astype(np.float64)
        tot = rel.sum()
        if tot == 0:
            continue
        count = np.cumsum(rel)
        aps[i] = np.mean(count[rel == 1] / (np.flatnonzero(rel) + 1.0))
    return aps.mean()


def random_codes(rng, n, nbits):
    return pack_codes(rng.integers(0, 2, (n, nbits), dtype=np.uint8))


def first_call():
    rng = np.random.default_rng(1)
    X = random_codes(rng, 2000, 64)
    Q = random_codes(rng, 9, 64)
    ql, dl = rng.integers(0, 3, 9), rng.integers(0, 3, 2000)
    t0 = time.perf_counter()
    average_precision(Q, X, ql, dl)
    average_precision(Q, X, ql, dl, ties="aware")
    return time.perf_counter() - t0


def clustered(rng, n, q, nbits, classes):
    """Codes near one random centre per class (so MAP is far from chance), labels 0..classes-1."""
    centres = rng.integers(0, 2, (classes, nbits), dtype=np.uint8)
    dl = rng.integers(0, classes, n)
    ql = rng.integers(0, classes, q)

    def draw(lab):
        flip = (rng.random((len(lab), nbits)) < 0.25).astype(np.uint8)
        return centres[lab] ^ flip

    return draw(ql), draw(dl), ql, dl


def cifar(a):
    rng = np.random.default_rng(a.seed)
    Qb, Xb, ql, dl = clustered(rng, a.n, a.q, a.bits, a.classes)
    Q, X = pack_codes(Qb), pack_codes(Xb)
    assert np.array_equal(unpack_codes(X, a.bits), Xb)
    fc = first_call()
    t_ours, m_ours = best_of(lambda: mean_average_precision(Q, X, ql, dl), a.repeat)
    t_aw, m_aw = best_of(lambda: mean_average_precision(Q, X, ql, dl, ties="aware"), a.repeat)
    t_np, m_np = best_of(lambda: numpy_map(Qb, Xb, ql, dl))
    assert abs(m_ours - m_np) < 1e-9, (m_ours, m_np)
    cmp = a.q * a.n
    print(f"threads={numba.get_num_threads()} q={a.q} n={a.n} bits={a.bits} classes={a.classes}")
    print(f"first call (compile or numba cache load): {fc:.2f} s")
    print(f"numpy  (dot + stable argsort + cumsum) {t_np:8.3f} s {cmp / t_np / 1e9:7.3f} Gcmp/s")
    print(f"kernels ties=index                    {t_ours:8.3f} s {cmp / t_ours / 1e9:7.3f} Gcmp/s")
    print(f"kernels ties=aware                    {t_aw:8.3f} s {cmp / t_aw / 1e9:7.3f} Gcmp/s")
    print(f"MAP numpy {m_np:.10f} kernels {m_ours:.10f} (tie-aware {m_aw:.10f})")
    print(f"speed-up vs numpy: {t_np / t_ours:.1f}x (ties=index), {t_np / t_aw:.1f}x (ties=aware)")
    return {
        "case": "cifar",
        "threads": numba.get_num_threads(),
        "q": a.q,
        "n": a.n,
        "bits": a.bits,
        "first_call_s": fc,
        "numpy_s": t_np,
        "index_s": t_ours,
        "aware_s": t_aw,
        "map_numpy": m_np,
        "map_index": m_ours,
        "map_aware": m_aw,
        "speedup_index": t_np / t_ours,
        "speedup_aware": t_np / t_aw,
    }


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def mem_child(a):
    """Run one MAP in this (fresh) process; print how far its peak RSS rose above the RSS with the
    inputs loaded (Linux: the peak is reset through /proc/self/clear_refs first)."""
    rng = np.random.default_rng(a.seed)
    Q = rng.integers(0, 2**63, (a.q, 1), dtype=np.int64).view(np.uint64)
    X = rng.integers(0, 2**63, (a.n, 1), dtype=np.int64).view(np.uint64)
    ql, dl = rng.integers(0, a.classes, a.q), rng.integers(0, a.classes, a.n)
    first_call()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kb("VmRSS")
    average_precision(Q, X, ql, dl, ties=a.ties)
    peak = _status_kb("VmHWM")
    row = {
        "n": a.n,
        "q": a.q,
        "ties": a.ties,
        "input_bytes": X.nbytes + dl.nbytes,
        "extra_peak_bytes": max(0, peak - base),
    }
    print(json.dumps(row))


def scale(a):
    rng = np.random.default_rng(a.seed)
    Q = rng.integers(0, 2**63, (a.q, 1), dtype=np.int64).view(np.uint64)
    Q ^= rng.integers(0, 2, (a.q, 1), dtype=np.int64).view(np.uint64) << np.uint64(63)
    X = rng.integers(0, 2**63, (a.n, 1), dtype=np.int64).view(np.uint64)
    X ^= rng.integers(0, 2, (a.n, 1), dtype=np.int64).view(np.uint64) << np.uint64(63)
    ql, dl = rng.integers(0, a.classes, a.q), rng.integers(0, a.classes, a.n)
    fc = first_call()
    t0 = time.perf_counter()
    popcount_pass(Q[:9, 0].copy(), X[:5000, 0].copy())
    fc_pc = time.perf_counter() - t0
    cmp = a.q * a.n
    Q1, X1 = np.ascontiguousarray(Q[:, 0]), np.ascontiguousarray(X[:, 0])
    t_pc, s = best_of(lambda: popcount_pass(Q1, X1), a.repeat)
    assert s.sum() > 0
    t_h, (A, R) = best_of(lambda: distance_histograms(Q, X, ql, dl), a.repeat)
    assert int(A[0].sum()) == a.n
    t_aw, ap_aw = best_of(lambda: average_precision(Q, X, ql, dl, ties="aware"), a.repeat)
    t_ix, ap_ix = (None, None)
    if not a.skip_index:
        t_ix, ap_ix = best_of(lambda: average_precision(Q, X, ql, dl, ties="index"), 1)
    th = numba.get_num_threads()
    print(f"threads={th} q={a.q} n={a.n} bits=64 classes={a.classes}")
    print(
        f"first call (compile or numba cache load): kernels {fc:.2f} s, popcount pass {fc_pc:.2f} s"
    )
    rows = [
        ("popcount-only pass (ceiling)", t_pc),
        ("distance_histograms", t_h),
        ("MAP ties=aware", t_aw),
    ]
    if t_ix is not None:
        rows.append(("MAP ties=index", t_ix))
    for name, t in rows:
        print(f"{name:30s} {t:8.3f} s {cmp / t / 1e9:7.2f} Gcmp/s  {t_pc / t:5.2f}x of ceiling")
    print(f"MAP aware {ap_aw.mean():.6f}" + ("" if ap_ix is None else f" index {ap_ix.mean():.6f}"))
    out = {
        "case": "scale",
        "threads": th,
        "q": a.q,
        "n": a.n,
        "first_call_s": fc,
        "popcount_s": t_pc,
        "hist_s": t_h,
        "aware_s": t_aw,
        "index_s": t_ix,
        "ratio_hist": t_pc / t_h,
        "ratio_aware": t_pc / t_aw,
        "ratio_index": None if t_ix is None else t_pc / t_ix,
    }
    if a.mem:
        mem = []
        for n in (a.n // 4, a.n):
            for ties in ("aware", "index"):
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "scale",
                    "--mem-child",
                    "--n",
                    str(n),
                    "--q",
                    str(a.q_mem),
                    "--ties",
                    ties,
                ]
                res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                row = json.loads(res.stdout.strip().splitlines()[-1])
                mem.append(row)
                mib_in = row["input_bytes"] / 2**20
                mib_peak = row["extra_peak_bytes"] / 2**20
                print(
                    f"memory: n={n:9d} q={a.q_mem} ties={ties:5s} input {mib_in:7.1f} MiB"
                    f"  peak RSS growth during MAP {mib_peak:7.1f} MiB"
                )
        out["memory"] = mem
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("case", choices=["cifar", "scale"])
    p.add_argument("--n", type=int, default=None, help="database codes")
    p.add_argument("--q", type=int, default=None, help="queries")
    p.add_argument("--bits", type=int, default=48, help="code length (cifar)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3, help="timed runs (best kept); numpy runs once")
    p.add_argument("--threads", type=int, default=0, help="threads (0: numba's default)")
    p.add_argument("--skip-index", action="store_true", help="scale: skip MAP with ties=index")
    p.add_argument("--mem", action="store_true", help="scale: peak memory at n/4 and n")
    p.add_argument("--q-mem", type=int, default=1000, help="queries for the memory runs")
    p.add_argument("--mem-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ties", default="aware", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--json",
        nargs="?",
        const="@default",
        default=None,
        metavar="PATH",
        help="write the result file (command, commit, machine, date, figures) here; alone: "
        "benchmarks/results/map-<case>-<UTC date>/result.json",
    )
    a = p.parse_args(argv)
    if a.threads:
        numba.set_num_threads(a.threads)
    if a.case == "cifar":
        a.n = a.n or 59_000
        a.q = a.q or 1_000
        out = cifar(a)
    else:
        a.n = a.n or 1_000_000
        a.q = a.q or 10_000
        if a.mem_child:
            return mem_child(a)
        out = scale(a)
    print(json.dumps(out))
    if a.json == "@default":
        a.json = f"@default:map-{a.case}"
    _record.write(a.json, {**out, "numba": numba.__version__, "numpy": np.__version__})


if __name__ == "__main__":
    main()
