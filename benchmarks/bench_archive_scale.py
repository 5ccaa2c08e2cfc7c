"""Archive-scale search and benchmark: whole `aurorahash` processes against the in-memory kernels.

    flock /tmp/aurorahash-cpu.lock .venv/bin/python benchmarks/bench_archive_scale.py
    .venv/bin/python benchmarks/bench_archive_scale.py --scale 0.02 --part all   # quick smoke run
    .venv/bin/python benchmarks/bench_archive_scale.py --part files --keep       # keep the data
    ... bench_archive_scale.py --part rows --json   # + benchmarks/results/archive-scale-<date>/

Two axes, synthetic 64-bit codes written by `pipeline.synth.codes.write_code_shards` (class
centres plus 15% bit noise, 10 classes; queries share the database's centres so MAP means
something), 1,000 labelled queries in a separate dataset of the same model (50 files x 20 rows):

rows   10M codes in 200 per-file shards of 50,000 (`archive_relpaths(200)`), not compacted.
files  1M codes in 50,000 per-minute shards of 20 (THEMIS layout, `archive_relpaths(50_000)`):
       `aurorahash compact --codes DB --grace-hours 0` timed as a whole process (shards/s, target
       >= 500), then the same commands over the segments. Side measurement: `benchmark --no-ray`
       before compaction, capped by --precompact-timeout ("did not finish" past it).

For each axis, the in-memory kernels on the concatenated canonical codes in this process
(`hamming_knn` k=100; `mean_average_precision` ties=index and ties=aware; first call excluded),
then each command as a whole process (Python start-up, catalogue, Ray start-up included):
`search --queries Q --k 100 --out F.parquet` and `benchmark --queries Q --database DB`, each with
--no-ray and with --ray (a local instance started by the job; RAY_ADDRESS is removed from its
environment). Targets: wall <= 1.25 x kernel time for the same work + 10 s (search: k-NN;
benchmark: MAP ties=index + ties=aware), and no process over 3 GB (3,000 MB) resident.

Memory: the job runs under `/usr/bin/time -v` when present (its "maximum resident set size" is
the largest of the job and every descendant it reaped, i.e. Ray's processes too), and its process
tree is sampled every 0.5 s from /proc (VmHWM, the per-process high-water mark): the driver's,
the largest Ray worker's (`ray::*`) and the largest other Ray process's (raylet, GCS, ...).
A Ray worker's RSS includes the object-store pages it mapped.

Before the timed commands, `search` and `benchmark --no-ray` run once untimed on queries x
queries (--no-warm-jobs skips it), so that one-off numba compilation of the kernels the jobs call
(cached on disk) is not charged to the first timed command; the kernels' first call in this
process is excluded likewise.

Results: MAP from the job's JSON summary (`map`, `map_tie_aware`) equals the kernels' to 1e-6;
k-NN distances from --out equal `kernels.hamming_knn`'s exactly, neighbour ids are identical
between the Ray and --no-ray runs (also reported: global indices equal to the kernel's, and ids
naming the rows of those indices).

Data are generated under --workdir once (a marker records the parameters; a later run with the
same parameters reuses them); the files axis compacts a hard-link copy, so the shards survive for
reuse. Without --keep the generated data are removed at the end. Progress goes to stderr; stdout
gets the figures, a Markdown table for RESULTS.md and one JSON line; --json also writes that
JSON as a result file (benchmarks/_record.py: command, commit, machine, date, figures).
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)  # appended: a PYTHONPATH given (e.g. a kernels snapshot) comes first
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _record  # noqa: E402
import numba  # noqa: E402
from _timing import best_of  # noqa: E402

import kernels  # noqa: E402
from kernels import hamming_knn, mean_average_precision  # noqa: E402
from pipeline.codes import store  # noqa: E402
from pipeline.synth.codes import archive_relpaths, write_code_shards  # noqa: E402

MODEL = "5ca1e" + "0" * 59  # one model sha for database and queries
RSS_LIMIT_MB = 3000.0  # 3 GB
T0 = time.perf_counter()


def log(msg):
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ data


def gen_codes(n, nbits, n_classes, centre_seed, sample_seed, flip=0.15, chunk=1_000_000):
    """Like `synth.codes.make_codes` (class centre bits with `flip` noise, same packing), but the
    centres come from `centre_seed` (shared by database and queries) and the noise is drawn in
    chunks (10M x 64 random floats at once would take 5 GB)."""
    centres = np.random.default_rng(centre_seed).integers(0, 2, (n_classes, nbits), dtype=np.uint8)
    rng = np.random.default_rng(sample_seed)
    labels = rng.integers(0, n_classes, size=n)
    words = store.words_for(nbits)
    codes = np.empty((n, words), np.uint64)
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        bits = centres[labels[c0:c1]] ^ (rng.random((c1 - c0, nbits)) < flip).astype(np.uint8)
        padded = np.zeros((c1 - c0, words * 64), np.uint8)
        padded[:, :nbits] = bits
        packed = np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)
        codes[c0:c1] = packed.reshape(c1 - c0, words)
    return codes, labels


class Dataset:
    """A code dataset under `path` (shards in path/<model12>/...), its canonical codes/labels."""

    def __init__(self, path, n_files, rows_per_file, codes, labels):
        self.path = path
        self.relpaths = sorted(archive_relpaths(n_files))
        self.rows_per_file = rows_per_file
        self.codes = codes
        self.labels = labels

    @property
    def n(self):
        return len(self.codes)

    def ids(self, index):
        """Canonical frame ids of global row indices (any shape)."""
        index = np.asarray(index)
        flat = [
            store.frame_id(self.relpaths[i // self.rows_per_file], i % self.rows_per_file)
            for i in index.ravel().tolist()
        ]
        return np.asarray(flat, dtype=object).reshape(index.shape)


def dataset(workdir, name, n_files, rows_per_file, a, sample_seed):
    """Write (or reuse) one dataset; codes and labels are cached beside it for reuse."""
    path = os.path.join(workdir, name)
    cache = os.path.join(workdir, "cache")
    marker = os.path.join(cache, f"{name}.json")
    npz = os.path.join(cache, f"{name}.npz")
    params = {
        "n_files": n_files,
        "rows_per_file": rows_per_file,
        "nbits": a.nbits,
        "classes": a.classes,
        "centre_seed": a.seed,
        "sample_seed": sample_seed,
        "model": MODEL,
        "version": 1,
    }
    try:
        with open(marker) as f:
            same = json.load(f) == params
    except (OSError, ValueError):
        same = False
    if same and os.path.isdir(path) and os.path.exists(npz):
        z = np.load(npz)
        log(f"{name}: reusing {n_files:,} shards x {rows_per_file:,} rows in {path}")
        return Dataset(path, n_files, rows_per_file, z["codes"], z["labels"].astype(np.int64))
    for p in (path, marker, npz):
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
    os.makedirs(cache, exist_ok=True)
    n = n_files * rows_per_file
    log(f"{name}: writing {n_files:,} shards x {rows_per_file:,} rows = {n:,} codes to {path}")
    t0 = time.perf_counter()
    codes, labels = gen_codes(n, a.nbits, a.classes, a.seed, sample_seed)
    relpaths = archive_relpaths(n_files)
    c, lab, ids = write_code_shards(
        path,
        relpaths,
        rows_per_file=rows_per_file,
        nbits=a.nbits,
        n_classes=a.classes,
        model=MODEL,
        codes_labels=(codes, labels),
    )
    assert c is codes and ids[-1] == store.frame_id(sorted(relpaths)[-1], rows_per_file - 1)
    del ids
    np.savez(npz, codes=codes, labels=labels.astype(np.int16))
    with open(marker, "w") as f:
        json.dump(params, f)
    log(f"{name}: written in {time.perf_counter() - t0:.1f} s")
    return Dataset(path, n_files, rows_per_file, codes, labels.astype(np.int64))


def fresh_copy(src, dst):
    """A hard-link copy of a dataset (compaction adds and deletes files, never rewrites one)."""
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    try:
        subprocess.run(["cp", "-al", src, dst], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(src, dst)


# ------------------------------------------------------------------------------ processes


def _proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2 :].split()
    return int(rest[1]), rest[19]  # ppid, starttime


def _proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rindex(")") + 2]


def _proc_mem_kb(pid):
    hwm = rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return hwm, rss


def _proc_name(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read().replace(b"\0", b" ").strip()
        return raw.decode(errors="replace")[:120]
    except OSError:
        return "?"


class TreeSampler(threading.Thread):
    """Samples the process tree under `root` every `interval` s: per process the VmHWM (peak
    resident set) and the summed current RSS of the tree. Processes once seen stay tracked after
    being re-parented."""

    def __init__(self, root, interval=0.5):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.stop_event = threading.Event()
        self.procs = {}  # (pid, start) -> {"name", "ppid", "hwm_kb"}
        self.tree_peak_kb = 0

    def run(self):
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)
        self.sample()

    def sample(self):
        table = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    table[int(d)] = _proc_stat(int(d))
        children = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        live = {self.root} if self.root in table else set()
        live |= {pid for (pid, start) in self.procs if table.get(pid, (0, None))[1] == start}
        todo = list(live)
        while todo:
            for c in children.get(todo.pop(), []):
                if c not in live:
                    live.add(c)
                    todo.append(c)
        total = 0
        for pid in live:
            key = (pid, table[pid][1])
            try:
                hwm, rss = _proc_mem_kb(pid)
            except (OSError, ValueError):
                continue
            total += rss
            rec = self.procs.get(key)
            if rec is None:
                rec = self.procs[key] = {"name": "", "ppid": table[pid][0], "hwm_kb": 0}
            name = _proc_name(pid)  # Ray workers retitle themselves (ray::IDLE -> ray::task)
            if name and name != "?" and (not rec["name"] or name.startswith("ray::")):
                rec["name"] = name
            rec["hwm_kb"] = max(rec["hwm_kb"], hwm)
        self.tree_peak_kb = max(self.tree_peak_kb, total)

    def stop(self):
        self.stop_event.set()
        self.join()

    def alive_pids(self, zombies: bool = False):
        """Pids still running. A zombie (state Z) has ended and waits for its parent, or for
        pid 1 once its parent is gone, to reap it: listed only when `zombies`."""
        out = []
        for pid, start in self.procs:
            try:
                if _proc_stat(pid)[1] == start and (zombies or _proc_state(pid) not in "ZX"):
                    out.append(pid)
            except (OSError, ValueError, IndexError):
                pass
        return out

    def report(self, driver):
        """Peak MB of the driver, of the largest ray:: worker and of the largest other process."""
        drv = wrk = oth = 0.0
        wname = oname = ""
        nworkers = 0
        for (pid, _), r in self.procs.items():
            mb = r["hwm_kb"] * 1024 / 1e6
            if pid == driver:
                drv = max(drv, mb)
            elif pid == self.root:
                continue  # /usr/bin/time itself
            elif r["name"].startswith("ray::") and not r["name"].split(" ")[0].endswith("Agent"):
                nworkers += 1
                if mb > wrk:
                    wrk, wname = mb, r["name"]
            elif mb > oth:
                oth, oname = mb, r["name"].split(" ")[0].rsplit("/", 1)[-1]
        raylets = sum("raylet/raylet" in r["name"] for r in self.procs.values())
        return {
            "own_raylets": raylets,
            "driver_mb": drv,
            "worker_mb": wrk,
            "worker_name": wname,
            "workers_seen": nworkers,
            "other_mb": oth,
            "other_name": oname,
            "tree_peak_mb": self.tree_peak_kb * 1024 / 1e6,
            "processes_seen": len(self.procs),
        }


def job_argv():
    exe = os.path.join(os.path.dirname(sys.executable), "aurorahash")
    if os.path.exists(exe):
        return [exe]
    found = shutil.which("aurorahash")
    return [found] if found else [sys.executable, "-m", "jobs.cli"]


TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_job(label, args, logdir, timeout):
    """Run `aurorahash ARGS` as a whole process: wall, peak memory, JSON summary."""
    os.makedirs(logdir, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    out_p, err_p, time_p = (os.path.join(logdir, f"{slug}.{e}") for e in ("out", "err", "time"))
    argv = job_argv() + list(args)
    full = [TIME, "-v", "-o", time_p, *argv] if TIME else argv
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log(f"{label}: {' '.join(argv)}")
    with open(out_p, "w") as so, open(err_p, "w") as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=so, stderr=se, env=env, start_new_session=True)
        sampler = TreeSampler(p.pid)
        sampler.start()
        timed_out = False
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(p, sampler)
            rc = p.returncode
        wall = time.perf_counter() - t0
    sampler.stop()
    for _ in range(20 if timed_out else 0):  # killed processes take a moment to go
        if not sampler.alive_pids():
            break
        time.sleep(0.25)
    leftover = [pid for pid in sampler.alive_pids() if pid != p.pid]
    zombies = [pid for pid in sampler.alive_pids(zombies=True) if pid not in leftover + [p.pid]]
    driver = p.pid
    if TIME:
        kids = [pid for (pid, _), r in sampler.procs.items() if r["ppid"] == p.pid]
        driver = kids[0] if kids else -1
    mem = sampler.report(driver)
    time_max_mb = None
    if TIME and os.path.exists(time_p):
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", _read(time_p))
        time_max_mb = int(m.group(1)) * 1024 / 1e6 if m else None
    summary = None
    for line in reversed(_read(out_p).splitlines()):
        try:
            summary = json.loads(line)
            break
        except ValueError:
            continue
    res = {
        "label": label,
        "argv": argv,
        "rc": rc,
        "timed_out": timed_out,
        "wall_s": wall,
        "time_max_rss_mb": time_max_mb,
        **mem,
        "leftover_processes": len(leftover),
        "leftover_names": [_name_of(sampler, pid) for pid in leftover],
        "zombies_at_exit": len(zombies),  # ended, not yet reaped (by pid 1: parent gone)
        "summary": summary,
        "stderr": err_p,
    }
    peak = max(mem["driver_mb"], time_max_mb or 0.0)
    log(
        f"{label}: rc={rc}{' TIMEOUT' if timed_out else ''} wall {wall:.1f} s, driver "
        f"{mem['driver_mb']:.0f} MB, worker {mem['worker_mb']:.0f} MB, max(time -v) {peak:.0f} MB"
    )
    if rc != 0 and not timed_out:
        tail = _read(err_p)[-3000:]
        log(f"{label}: FAILED, stderr tail:\n{tail}")
    if leftover:
        log(f"{label}: {len(leftover)} processes of the job still alive after it exited")
    return res


def _name_of(sampler, pid):
    return next((r["name"] for (q, _), r in sampler.procs.items() if q == pid), "?")


def _read(path):
    with open(path) as f:
        return f.read()


def _kill(p, sampler):
    """End the timed-out job: its process group, then any descendant the sampler saw."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, sig)
        for pid in sampler.alive_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            p.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue


# ------------------------------------------------------------------------------ kernels


def warm_up(nbits):
    rng = np.random.default_rng(1)
    words = store.words_for(nbits)
    X = rng.integers(0, 2**63, (3000, words), dtype=np.int64).view(np.uint64)
    Q = X[:7].copy()
    ql, dl = rng.integers(0, 3, 7), rng.integers(0, 3, 3000)
    t0 = time.perf_counter()
    hamming_knn(Q, X, 10)
    mean_average_precision(Q, X, ql, dl, ties="index")
    mean_average_precision(Q, X, ql, dl, ties="aware")
    return time.perf_counter() - t0


def kernel_figures(db, q, k, repeat):
    log(f"kernels: hamming_knn {len(q.codes):,} x {db.n:,}, k={k}")
    t_knn, (D, I) = best_of(lambda: hamming_knn(q.codes, db.codes, k), repeat)
    log(f"kernels: k-NN {t_knn:.2f} s; MAP ties=index")
    t_mi, m_i = best_of(
        lambda: mean_average_precision(q.codes, db.codes, q.labels, db.labels, ties="index"), repeat
    )
    log(f"kernels: MAP ties=index {t_mi:.2f} s; MAP ties=aware")
    t_ma, m_a = best_of(
        lambda: mean_average_precision(q.codes, db.codes, q.labels, db.labels, ties="aware"), repeat
    )
    log(f"kernels: MAP ties=aware {t_ma:.2f} s")
    return {
        "knn_s": t_knn,
        "map_index_s": t_mi,
        "map_aware_s": t_ma,
        "map": float(m_i),
        "map_tie_aware": float(m_a),
        "D": np.asarray(D),
        "I": np.asarray(I),
    }


# ------------------------------------------------------------------------------ checks


def check_search(res, out_file, kern, db, q, k):
    """Distances exactly the kernel's; returns the (q, k) ids for the Ray/no-Ray comparison."""
    import pyarrow.parquet as pq

    if res["rc"] != 0 or not os.path.exists(out_file):
        res["check"] = "no output"
        res["correct"] = False
        return None
    t = pq.read_table(out_file)
    nq = len(q.codes)
    qid = np.asarray(t.column("query_id").to_pylist(), dtype=object)
    rank = t.column("rank").to_numpy()
    qidx = {s: i for i, s in enumerate(q.ids(np.arange(nq)).tolist())}
    rows = np.asarray([qidx.get(s, -1) for s in qid.tolist()])
    order = np.lexsort((rank, rows))
    if (rows < 0).any() or len(t) != nq * k:
        res["check"] = f"bad shape/query ids ({len(t)} rows, {int((rows < 0).sum())} unknown)"
        res["correct"] = False
        return None
    dist = t.column("distance").to_numpy()[order].reshape(nq, k)
    index = t.column("index").to_numpy()[order].reshape(nq, k)
    ids = np.asarray(t.column("id").to_pylist(), dtype=object)[order].reshape(nq, k)
    same_d = bool(np.array_equal(dist, kern["D"]))
    same_i = float(np.mean(index == kern["I"]))
    ids_ok = bool(np.array_equal(ids, db.ids(index)))
    res.update(same_distances=same_d, same_indices_frac=same_i, ids_match_index=ids_ok)
    res["check"] = f"dist exact: {same_d}; idx = kernel: {same_i:.4f}; ids = rows: {ids_ok}"
    res["correct"] = same_d
    return ids


def check_map(res, kern):
    s = res.get("summary") or {}
    if res["rc"] != 0 or "map" not in s:
        res["check"] = "no summary"
        res["correct"] = False
        return
    dm = abs(s["map"] - kern["map"])
    da = abs(s["map_tie_aware"] - kern["map_tie_aware"])
    res.update(map=s["map"], map_tie_aware=s["map_tie_aware"], map_err=dm, map_tie_aware_err=da)
    res["correct"] = dm <= 1e-6 and da <= 1e-6
    res["check"] = f"MAP err {dm:.1e} / tie-aware {da:.1e}"


def own_ray(res, ray):
    """A Ray run must start its own local instance: a raylet among the job's descendants. Without
    RAY_ADDRESS, ray.init() joins a Ray instance already running on the machine (another test's or
    job's), which makes the figures someone else's, and that instance may be torn down mid-run."""
    if ray and not res["own_raylets"]:
        res["check"] = res.get("check", "") + "; JOINED ANOTHER RAY INSTANCE (no own raylet)"
        res["correct"] = False


def other_ray_instances():
    """gcs_server processes already running (another Ray instance that jobs would join)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and "gcs_server" in _proc_name(int(d)):
            out.append(int(d))
    return out


def grade(res, bound):
    peaks = [res["driver_mb"], res["worker_mb"], res["other_mb"], res["time_max_rss_mb"] or 0.0]
    res["peak_any_mb"] = max(peaks)
    res["rss_ok"] = res["peak_any_mb"] <= RSS_LIMIT_MB
    res["bound_s"] = bound
    res["ratio"] = res["wall_s"] / bound if bound else None
    res["time_ok"] = bound is None or (not res["timed_out"] and res["wall_s"] <= bound)
    res["pass"] = bool(res["rc"] == 0 and res["time_ok"] and res["rss_ok"] and res["correct"])


# ------------------------------------------------------------------------------ the axes


def commands(axis, db_path, q, db, kern, a, work, bounds):
    """search/benchmark, --no-ray and Ray; graded against the bounds; returns the results."""
    logdir = os.path.join(work, "logs")
    outs = os.path.join(work, "out")
    os.makedirs(outs, exist_ok=True)
    k = a.k
    out = []
    ids = {}
    for ray in (False, True):
        tag = "Ray" if ray else "--no-ray"
        nf = os.path.join(outs, f"{axis}_{'ray' if ray else 'noray'}.parquet")
        if os.path.exists(nf):
            os.remove(nf)
        args = ["search", "--codes", db_path, "--queries", q.path, "--k", str(k), "--out", nf]
        args += ["--ray"] if ray else ["--no-ray"]  # forced: left alone, small work stays local
        r = run_job(f"{axis} search {tag}", args, logdir, a.timeout)
        r.update(axis=axis, step=f"search {tag}", kind="search")
        ids[ray] = check_search(r, nf, kern, db, q, k)
        own_ray(r, ray)
        grade(r, bounds["search"])
        out.append(r)
    same = ids[False] is not None and ids[True] is not None and np.array_equal(*ids.values())
    for r in out:
        r["ids_ray_eq_noray"] = bool(same)
        r["check"] += f"; ids Ray = no-Ray: {same}"
        r["correct"] = r["correct"] and bool(same)
        grade(r, bounds["search"])
    for ray in (False, True):
        tag = "Ray" if ray else "--no-ray"
        args = ["benchmark", "--queries", q.path, "--database", db_path]
        args += ["--ray"] if ray else ["--no-ray"]
        r = run_job(f"{axis} benchmark {tag}", args, logdir, a.timeout)
        r.update(axis=axis, step=f"benchmark {tag}", kind="benchmark")
        check_map(r, kern)
        own_ray(r, ray)
        grade(r, bounds["benchmark"])
        out.append(r)
    return out


def kernel_rows(axis, kern, nq, n):
    cmp = nq * n
    rows = []
    for step, key in (
        ("kernel hamming_knn k=100", "knn_s"),
        ("kernel MAP ties=index", "map_index_s"),
        ("kernel MAP ties=aware", "map_aware_s"),
    ):
        t = kern[key]
        row = {"axis": axis, "step": step, "kind": "kernel", "wall_s": t}
        rows.append({**row, "gcmp": cmp / t / 1e9})
    return rows


def bounds_of(kern, a):
    return {
        "search": a.slack_factor * kern["knn_s"] + a.slack_s,
        "benchmark": a.slack_factor * (kern["map_index_s"] + kern["map_aware_s"]) + a.slack_s,
    }


def part_rows(a, work, q):
    n_files = a.rows_files
    rpf = max(1, round(a.rows_per_file * a.scale))
    db = dataset(work, "rows_db", n_files, rpf, a, a.seed + 1)
    kern = kernel_figures(db, q, a.k, a.repeat)
    bounds = bounds_of(kern, a)
    res = kernel_rows("rows", kern, len(q.codes), db.n)
    res += commands("rows", db.path, q, db, kern, a, work, bounds)
    info = {"n": db.n, "files": n_files, "rows_per_file": rpf, **_kern_json(kern)}
    return res, info


def part_files(a, work, q):
    n_files = max(1, round(a.files_files * a.scale))
    rpf = a.files_rows_per_file
    pristine = dataset(work, "files_pristine", n_files, rpf, a, a.seed + 2)
    db_path = os.path.join(work, "files_db")
    fresh_copy(pristine.path, db_path)
    db = Dataset(db_path, n_files, rpf, pristine.codes, pristine.labels)
    kern = kernel_figures(db, q, a.k, a.repeat)
    bounds = bounds_of(kern, a)
    logdir = os.path.join(work, "logs")
    res = kernel_rows("files", kern, len(q.codes), db.n)
    if a.precompact_timeout > 0:
        args = ["benchmark", "--queries", q.path, "--database", db_path, "--no-ray"]
        label = "files benchmark --no-ray before compaction"
        r = run_job(label, args, logdir, a.precompact_timeout)
        r.update(axis="files", step="side: benchmark --no-ray, before compaction", kind="side")
        if r["timed_out"]:
            r["check"], r["correct"] = f"did not finish in {a.precompact_timeout:g} s", False
        else:
            check_map(r, kern)
        grade(r, bounds["benchmark"])
        res.append(r)
    args = ["compact", "--codes", db_path, "--grace-hours", "0"]
    r = run_job("files compact", args, logdir, a.timeout)
    r.update(axis="files", step="compact --grace-hours 0", kind="compact")
    r["shards_per_s"] = n_files / r["wall_s"]
    s = r.get("summary") or {}
    r["correct"] = r["rc"] == 0
    flat = [f"{key}={v}" for key, v in sorted(s.items()) if not isinstance(v, (dict, list))]
    r["check"] = ", ".join(flat)[:160]
    grade(r, None)
    r["time_ok"] = r["shards_per_s"] >= a.min_shards_per_s and not r["timed_out"]
    r["pass"] = bool(r["pass"] and r["time_ok"])
    res.append(r)
    res += commands("files", db_path, q, db, kern, a, work, bounds)
    info = {"n": db.n, "files": n_files, "rows_per_file": rpf, **_kern_json(kern)}
    return res, info


def _kern_json(kern):
    return {k: v for k, v in kern.items() if k not in ("D", "I")}


# ------------------------------------------------------------------------------ report


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def _verdict(r):
    if r["kind"] == "side":  # not a target: within the bound or not, for information
        if r["timed_out"]:
            return "did not finish"
        return "(side) within bound" if r["pass"] else "(side) over bound"
    return "**pass**" if r["pass"] else "**FAIL**"


def markdown(results, a):
    lines = [
        "| axis | step | wall s | driver peak RSS MB | largest Ray worker RSS MB | max RSS any "
        "process MB | bound s | ratio | results | pass |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if r["kind"] == "kernel":
            lines.append(
                f"| {r['axis']} | {r['step']} (in memory) | {r['wall_s']:.2f} | - | - | - | - | "
                f"{r['gcmp']:.2f} Gcmp/s | - | - |"
            )
            continue
        wall = f"{r['wall_s']:.1f}" + (" (timeout)" if r["timed_out"] else "")
        if r["kind"] == "compact":
            bound = f">= {a.min_shards_per_s:g} shards/s"
            ratio = f"{r['shards_per_s']:.0f} shards/s"
        else:
            bound, ratio = _f(r["bound_s"], ".1f"), _f(r["ratio"], ".2f")
        worker = f"{r['worker_mb']:.0f}" if r["workers_seen"] else "-"
        lines.append(
            f"| {r['axis']} | `{r['step']}` | {wall} | {r['driver_mb']:.0f} | {worker} | "
            f"{r['peak_any_mb']:.0f} | {bound} | {ratio} | {r.get('check', '')} | "
            f"{_verdict(r)} |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("rows", "files", "all"), default="all")
    p.add_argument("--scale", type=float, default=1.0, help="shrink both axes (0.02: smoke run)")
    p.add_argument("--workdir", default="/tmp/aurorahash-scale")
    p.add_argument("--keep", action="store_true", help="keep the generated data for a re-run")
    p.add_argument("--rows-files", type=int, default=200, help="rows axis: shards")
    p.add_argument("--rows-per-file", type=int, default=50_000, help="rows axis: rows per shard")
    p.add_argument("--files-files", type=int, default=50_000, help="files axis: shards")
    p.add_argument("--files-rows-per-file", type=int, default=20, help="files axis: rows per shard")
    p.add_argument("--query-files", type=int, default=50)
    p.add_argument("--query-rows-per-file", type=int, default=20)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--nbits", type=int, default=64)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="kernel timings: best of N")
    p.add_argument("--timeout", type=float, default=1800, help="per command, s")
    p.add_argument(
        "--precompact-timeout", type=float, default=300, help="side run cap, s (0: skip it)"
    )
    p.add_argument(
        "--no-warm-jobs",
        action="store_true",
        help="skip the untimed warm-up jobs (queries x queries) that fill the numba cache first",
    )
    p.add_argument("--slack-factor", type=float, default=1.25)
    p.add_argument("--slack-s", type=float, default=10.0)
    p.add_argument("--min-shards-per-s", type=float, default=500.0)
    _record.add_json_argument(p, "archive-scale")
    a = p.parse_args(argv)

    work = a.workdir
    os.makedirs(work, exist_ok=True)
    load0 = os.getloadavg()
    log(f"workdir {work}; job: {' '.join(job_argv())}; /usr/bin/time: {bool(TIME)}")
    log(f"kernels from {kernels.__file__}; PYTHONPATH={os.environ.get('PYTHONPATH', '')}")
    others = other_ray_instances()
    if others:
        log(
            f"WARNING: Ray already runs on this machine (gcs_server pids {others}): the Ray runs "
            "may join it instead of starting their own (they are then marked as failed)"
        )
    first = warm_up(a.nbits)
    log(f"kernels first call (compile or numba cache load): {first:.2f} s")
    q = dataset(work, "queries", a.query_files, a.query_rows_per_file, a, a.seed + 3)
    if not a.no_warm_jobs:  # one-off numba compilation of the jobs' kernels is not the job's cost
        logdir = os.path.join(work, "logs")
        warm = (["search", "--codes", q.path, "--k", "10"], ["benchmark", "--database", q.path])
        for job in warm:
            w = run_job(f"warm-up {job[0]}", [*job, "--queries", q.path, "--no-ray"], logdir, 900)
            log(f"warm-up {job[0]} (untimed, queries x queries): rc={w['rc']}")
    results, info = [], {}
    try:
        if a.part in ("rows", "all"):
            res, info["rows"] = part_rows(a, work, q)
            results += res
        if a.part in ("files", "all"):
            res, info["files"] = part_files(a, work, q)
            results += res
    finally:
        if not a.keep:
            for name in ("queries", "rows_db", "files_pristine", "files_db", "cache", "out"):
                path = os.path.join(work, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
            log(f"removed the generated data under {work} (logs kept in {work}/logs)")

    load1 = os.getloadavg()
    print(
        f"cores={os.cpu_count()} numba threads={numba.get_num_threads()} nbits={a.nbits} "
        f"queries={len(q.codes):,} k={a.k} scale={a.scale:g} "
        f"load avg {load0[0]:.2f} -> {load1[0]:.2f}"
    )
    print(f"kernels first call (excluded): {first:.2f} s")
    for axis, inf in info.items():
        print(
            f"{axis}: {inf['n']:,} codes in {inf['files']:,} shards of {inf['rows_per_file']:,}; "
            f"kernels k-NN {inf['knn_s']:.2f} s, MAP index {inf['map_index_s']:.2f} s, "
            f"aware {inf['map_aware_s']:.2f} s; "
            f"MAP {inf['map']:.6f} (tie-aware {inf['map_tie_aware']:.6f})"
        )
    print(
        f"bound: wall <= {a.slack_factor:g} x kernel time + {a.slack_s:g} s (search: k-NN; "
        f"benchmark: MAP index + aware); RSS <= {RSS_LIMIT_MB:.0f} MB per process"
    )
    print()
    print(markdown(results, a))
    print()
    graded = [r for r in results if r["kind"] in ("search", "benchmark", "compact")]
    ok = all(r["pass"] for r in graded)
    print(f"all targets met: {ok}")
    keep = [
        *("axis", "step", "wall_s", "rc", "timed_out", "driver_mb", "worker_mb", "worker_name"),
        *("other_mb", "other_name", "time_max_rss_mb", "tree_peak_mb", "peak_any_mb", "bound_s"),
        *("ratio", "pass", "correct", "check", "shards_per_s", "gcmp", "map", "map_tie_aware"),
        "leftover_processes",
        "own_raylets",
    ]
    doc = {
        "case": "archive_scale",
        "part": a.part,
        "scale": a.scale,
        "cores": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "load_average": [round(load0[0], 2), round(load1[0], 2)],
        "first_call_s": first,
        "axes": info,
        "all_pass": ok,
        "results": [{k: r[k] for k in keep if k in r} for r in results],
    }
    print(json.dumps(doc, default=str))
    _record.write(a.json, json.loads(json.dumps(doc, default=str)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
