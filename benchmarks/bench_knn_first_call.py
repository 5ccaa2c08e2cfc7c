"""Hamming k-NN's first call in a fresh process: the NumPy scan against the compiled one.

    python benchmarks/bench_knn_first_call.py --json
    python benchmarks/bench_knn_first_call.py --sizes 100000,1000000 --words 1 --repeat 3

Why: `kernels.knn.hamming_knn` scans in NumPy until a process has done `SMALL_WORK` query x code
x word comparisons that way, because a search by id is one call in a fresh process, and there
the compiled kernel's first call pays for loading numba and its cached machine code. This script
checks the budget with the product's own function: for each size, a fresh interpreter imports
`kernels`, pins one path (`kernels.knn.FORCE`), and times its first call (imports included) and a
second call (warm), for one query and for --queries queries. Processes run in turn, `--repeat`
rounds (a busy spell hits both paths alike); best of each. The compiled path's on-disk cache is
warmed first (untimed), as on a machine that has run any job before.

Prints, per case, first-call and warm seconds of each path and the ratio compiled / NumPy
(> 1: NumPy is faster); SMALL_WORK is right where the ratio crosses 1. `rule` says which path a
fresh process's first call takes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _record  # noqa: E402

# One process: data first (untimed), then import + first call, then a warm call.
CHILD = """import json, sys, time
import numpy as np
n, words, nq, force = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(0)
X = rng.integers(0, 2**63, (n, words), dtype=np.uint64)
Q = X[rng.integers(0, n, nq)]
t0 = time.perf_counter()
import kernels.knn
kernels.knn.FORCE = force
D, I = kernels.knn.hamming_knn(Q, X, 10)
t1 = time.perf_counter()
kernels.knn.hamming_knn(Q, X, 10)
t2 = time.perf_counter()
print(json.dumps({"first_s": t1 - t0, "warm_s": t2 - t1, "numba": "numba" in sys.modules,
                  "checksum": int(I.sum())}))
"""


def child(n: int, words: int, nq: int, force: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(words), str(nq), force],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    if p.returncode != 0:
        raise SystemExit(f"child {n} {words} {nq} {force} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def case(n: int, words: int, nq: int, repeat: int) -> dict:
    child(n, words, nq, "compiled")  # warm numba's on-disk cache and the page cache
    # the two paths' processes in turn, round by round; best of each field
    results = {"numpy": [], "compiled": []}
    for _ in range(repeat):
        for force in results:
            results[force].append(child(n, words, nq, force))
    out = {}
    for force, rs in results.items():
        out[force] = {
            "first_s": round(min(r["first_s"] for r in rs), 4),
            "warm_s": round(min(r["warm_s"] for r in rs), 4),
            "loaded_numba": rs[-1]["numba"],
            "checksum": rs[-1]["checksum"],
        }
    if out["numpy"]["checksum"] != out["compiled"]["checksum"]:
        raise SystemExit(f"the two paths disagree at n={n} words={words} nq={nq}")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000,4000000", help="database codes per case")
    ap.add_argument("--words", default="1,2", help="64-bit words per code, per case")
    ap.add_argument("--queries", type=int, default=16, help="queries of the second row per size")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (3)")
    _record.add_json_argument(ap, "knn-first-call")
    a = ap.parse_args(argv)
    import kernels.knn

    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {_record.cpu_model()}, "
        f"load average {os.getloadavg()[0]:.1f}; SMALL_WORK = {kernels.knn.SMALL_WORK:,}; "
        f"best of {a.repeat} fresh processes"
    )
    print(
        f"{'n':>9} {'words':>5} {'queries':>7} {'work':>12}  first call: numpy  compiled  "
        f"ratio   warm: numpy  compiled  rule"
    )
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        for words in (int(w) for w in a.words.split(",")):
            for nq in (1, a.queries):
                r = case(n, words, nq, a.repeat)
                work = n * words * nq
                rule = "numpy" if work <= kernels.knn.SMALL_WORK else "compiled"
                ratio = r["compiled"]["first_s"] / r["numpy"]["first_s"]
                rows.append(
                    {
                        "n": n,
                        "words": words,
                        "queries": nq,
                        "work": work,
                        "rule": rule,
                        "ratio_first": round(ratio, 2),
                        **r,
                    }
                )
                print(
                    f"{n:9,} {words:5} {nq:7} {work:12,}  {r['numpy']['first_s']:17.3f} "
                    f"{r['compiled']['first_s']:9.3f} {ratio:6.2f}   {r['numpy']['warm_s']:11.3f} "
                    f"{r['compiled']['warm_s']:9.3f}  {rule}",
                    flush=True,
                )
    _record.write(
        a.json,
        {
            "small_work": kernels.knn.SMALL_WORK,
            "repeat": a.repeat,
            "load_average_after": os.getloadavg(),
            "cases": rows,
        },
    )


if __name__ == "__main__":
    main()
