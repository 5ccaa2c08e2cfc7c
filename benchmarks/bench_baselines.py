"""MAP of the peer baselines (pipeline.baselines) beside our deep hashing model, one protocol.

    # CIFAR-10, protocol cifar10-1 (1,000 queries / 5,000 training / 59,000 database)
    flock /tmp/aurorahash-cpu.lock .venv/bin/python benchmarks/bench_baselines.py \
        --dataset cifar10 --data ../shared/data/cifar10 --protocol cifar10-1 \
        --model runs/baselines/c10-1-compact-b48
    # synthetic aurora at the dataset helper's default sizes (400 / 2,000 / 4,000)
    flock /tmp/aurorahash-cpu.lock .venv/bin/python benchmarks/bench_baselines.py \
        --dataset synthetic-aurora --model runs/baselines/aurora-compact-b48
    # quick smoke run
    .venv/bin/python benchmarks/bench_baselines.py --dataset synthetic-aurora \
        --n-train 200 --n-query 40 --n-database 400 --bits 12,24

Hashing baselines (LSH, PCAH, SH, ITQ, KSH) are fitted on the protocol's training set and scored
by MAP over the whole database (kernels.mean_average_precision, ties by index) at each code length,
on two feature sets:
- `gist`: our GIST re-implementation (pipeline/baselines/gist.py; 512-d: 4 scales x 8
  orientations x 4 x 4 blocks, the classic hashing papers' CIFAR-10 features). Cached under the
  aurorahash cache directory after the first run.
- `cnn` (with --model): the checkpoint's hash-layer input (SPP -> PMT output of the compact net:
  640-d), i.e. supervised deep features of our own trained model.
KSH uses --ksh-labelled labelled training samples (default 2,000) and --ksh-anchors anchors (300).

Real-valued CNN peers (with --model), ranked by cosine similarity, exact MAP with ties by index
(pipeline.baselines.ranking): MAC, R-MAC (L=3), R-MAC with PCA-whitening learned on the training
set's regional vectors, MS-R-MAC (+PW) over input scales --scales, VLAD (k=16) and Hamming
Embedding (k=64 words, 64-bit signatures, h_t=24) with the last conv map's columns as local
descriptors. The "ours" row is the checkpoint's own codes, made by the shipped encode path
(`pipeline.training.evaluate.encode` under the checkpoint's encode settings: the codes ingest
stores).

--query-time N (Table 5's second column): the mean wall time per query to rank the whole
database, over the first N queries, one query at a time, for ours (Hamming, the shipped search
kernel) and every real-valued peer (`pipeline.baselines.query_time`), in this one run, on one
thread each (numpy's BLAS, numba and torch), after the MAP figures.

numpy's OpenBLAS is limited to one thread (set before numpy loads): on a busy 2-core machine its
thread pool makes the small SVDs/eigensolves of ITQ and KSH ~100x slower. --threads sets torch's.
Progress goes to stderr; the tables to stdout, then one JSON line; --json also writes the result
file (benchmarks/_record.py; alone: benchmarks/results/baselines-<date>/result.json).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _record  # noqa: E402
import torch  # noqa: E402

from kernels import mean_average_precision, pack_codes  # noqa: E402
from pipeline.baselines import SUPERVISED, fit_hasher  # noqa: E402
from pipeline.baselines.cnn import Whitening, aggregate, conv_batches, regional_vectors  # noqa: E402
from pipeline.baselines.gist import gist  # noqa: E402
from pipeline.baselines.local import VLAD, HammingEmbedding, local_descriptors  # noqa: E402
from pipeline.baselines.query_time import (  # noqa: E402
    rank_codes,
    rank_cosine,
    rank_he,
    time_queries,
)
from pipeline.baselines.ranking import average_precision_scores, cosine_map, l2n  # noqa: E402

METHODS = ("lsh", "pcah", "sh", "itq", "ksh")
REAL = ("mac", "rmac", "rmac-pw", "msrmac-pw", "vlad", "he")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- features -----------------------------------------------------------------------------------


def gist_cached(x: np.ndarray, what: str) -> np.ndarray:
    from pipeline.training.datasets.cifar10 import cache_dir

    key = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]
    key += hashlib.sha256(str((x.shape, x.dtype.str)).encode()).hexdigest()[:8]
    path = os.path.join(cache_dir(), f"baselines-gist-v1-{key}.npy")
    if os.path.exists(path):
        try:
            g = np.load(path, allow_pickle=False)
            if g.shape[0] == len(x):
                return g
        except (OSError, ValueError):
            pass
    t = time.perf_counter()
    g = gist(x)
    log(f"GIST of {len(x)} {what} images: {time.perf_counter() - t:.1f} s")
    tmp = path + f".tmp{os.getpid()}.npy"
    np.save(tmp, g)
    os.replace(tmp, path)
    return g


def cnn_features(model, splits, pre, scales, batch, he_bits=64):
    """Pass 1 (training set): fit whitenings, VLAD/HE codebooks, keep training features.
    Pass 2 (query, database): every descriptor, computed per batch."""
    t0 = time.perf_counter()
    tr = {"feat": [], "reg": [], "regms": [], "local": []}
    for out in conv_batches(model, splits["train"][0], pre, batch, scales):
        tr["feat"].append(out["feat"].numpy())
        regs = [regional_vectors(m) for m in out["maps"]]
        tr["reg"].append(regs[scales.index(1.0)].reshape(-1, regs[0].shape[-1]).numpy())
        tr["regms"].append(torch.cat(regs, 1).reshape(-1, regs[0].shape[-1]).numpy())
        tr["local"].append(local_descriptors(out["maps"][scales.index(1.0)].numpy()))
    tr = {k: np.concatenate(v) for k, v in tr.items()}
    pw = Whitening.fit(tr["reg"])
    pw_ms = Whitening.fit(tr["regms"])
    vlad = VLAD.fit(tr["local"], k=16, seed=0)
    he = HammingEmbedding.fit(tr["local"], k=64, n_bits=he_bits, seed=0)
    log(f"CNN pass 1 (training set, codebooks, whitening): {time.perf_counter() - t0:.1f} s")
    sets = {}
    for name in ("query", "db"):
        t0 = time.perf_counter()
        acc = {k: [] for k in ("feat", "h", "mac", "rmac", "rmac-pw", "msrmac-pw", "vlad")}
        hw, hs = [], []
        for out in conv_batches(model, splits[name][0], pre, batch, scales):
            m1 = out["maps"][scales.index(1.0)]
            regs = [regional_vectors(m) for m in out["maps"]]
            r1 = regs[scales.index(1.0)]
            acc["feat"].append(out["feat"].numpy())
            acc["h"].append(out["h"].numpy())
            acc["mac"].append(l2n(m1.amax(dim=(2, 3)).numpy()))
            acc["rmac"].append(aggregate(r1))
            acc["rmac-pw"].append(aggregate(r1, pw))
            acc["msrmac-pw"].append(aggregate(torch.cat(regs, 1), pw_ms))
            loc = local_descriptors(m1.numpy())
            acc["vlad"].append(vlad.encode(loc))
            w, s = he.encode(loc)
            hw.append(w)
            hs.append(s)
        sets[name] = {k: np.concatenate(v) for k, v in acc.items()}
        sets[name]["he"] = (np.concatenate(hw), np.concatenate(hs))
        log(f"CNN pass over {name} ({len(splits[name][1])}): {time.perf_counter() - t0:.1f} s")
    maps = {"map_hw": tuple(m1.shape[-2:]), "channels": int(m1.shape[1])}
    return tr["feat"], sets, he, maps


def ours_codes(model, cfg, sp, pre, batch):
    """Packed codes of queries and database through the shipped encode path."""
    from pipeline.model.settings import encode_settings
    from pipeline.training.evaluate import encode

    settings = encode_settings(cfg)
    qh = encode(model, sp["query"][0], settings, batch, preprocess=pre)[0]
    dh = encode(model, sp["db"][0], settings, batch, preprocess=pre)[0]
    return pack_codes(qh), pack_codes(dh)


def query_times(result, codes, cnn_sets, he, real, n):
    """Table 5's query time of ours and each real-valued peer, one thread, first n queries."""
    import numba

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    n = min(n, len(codes[0]))
    rankers = {"ours": rank_codes(*codes)}
    for r in real:
        q, d = cnn_sets["query"][r], cnn_sets["db"][r]
        rankers[r] = rank_he(he, q, d) if r == "he" else rank_cosine(q, d)
    for name, rank in rankers.items():
        t = time_queries(rank, n)
        row = result["ours"] if name == "ours" else result["real"][name]
        row["ms_per_query"] = round(t["ms_per_query"], 4)
        log(f"{name:9s}: {t['ms_per_query']:.3f} ms per query ({n} queries)")
    result["query_time"] = {"queries": n, "database": len(codes[1]), "threads": 1}


def provenance(cfg, dataset, protocol, data_seed):
    d = cfg.get("data") or {}
    same = (
        d.get("dataset") == dataset and d.get("protocol") == protocol and d.get("seed") == data_seed
    )
    note = "trained on this protocol's training set" if same else "TRAINED ON OTHER DATA"
    if not same and dataset == "cifar10":
        note += " (its training images may include this protocol's queries: optimistic)"
    return {
        "arch": cfg.get("arch"),
        "bits": cfg.get("bits"),
        "sha256": cfg.get("model_sha256", "")[:12],
        "data": {k: d.get(k) for k in ("dataset", "protocol", "seed", "train")},
        "epochs": cfg.get("epochs_done"),
        "note": note,
    }


# -- main ---------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="synthetic-aurora", choices=["cifar10", "synthetic-aurora"])
    p.add_argument("--data", default=None, help="CIFAR-10 shards (../shared/data/cifar10)")
    p.add_argument("--protocol", default=None, help="cifar10-1 (default for cifar10) or cifar10-2")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=None, help="synthetic-aurora sizes")
    p.add_argument("--n-query", type=int, default=None)
    p.add_argument("--n-database", type=int, default=None)
    p.add_argument("--model", default=None, help="checkpoint DIR: CNN features and CNN peers")
    p.add_argument("--bits", default="12,24,32,48")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--features", default="gist,cnn", help="gist and/or cnn (cnn needs --model)")
    p.add_argument("--real", default=",".join(REAL), help="real-valued CNN peers ('' for none)")
    p.add_argument("--ksh-labelled", type=int, default=2000)
    p.add_argument("--ksh-anchors", type=int, default=300)
    p.add_argument("--scales", default="1,0.7071", help="MS-R-MAC input scales (1 included)")
    p.add_argument("--seed", type=int, default=0, help="seed of the baselines' fits")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument(
        "--query-time",
        type=int,
        default=0,
        help="time ranking the whole database for this many queries per method (0: off)",
    )
    _record.add_json_argument(p, "baselines")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    bits_list = [int(b) for b in a.bits.split(",") if b]
    methods = [m for m in a.methods.split(",") if m]
    feats_wanted = [f for f in a.features.split(",") if f]
    real = [r for r in a.real.split(",") if r] if a.model else []
    if "cnn" in feats_wanted and not a.model:
        feats_wanted.remove("cnn")
    scales = [float(s) for s in a.scales.split(",")]
    if 1.0 not in scales:
        scales.append(1.0)
    protocol = a.protocol or ("cifar10-1" if a.dataset == "cifar10" else "synthetic")
    t_start = time.perf_counter()

    model, cfg, pre = None, None, None
    if a.model:
        from pipeline.model.checkpoint import load_checkpoint

        model, cfg = load_checkpoint(a.model)
        model.eval()
        pre = cfg["preprocess"]

    from pipeline.training.datasets import load_splits

    opts = {"n_train": a.n_train, "n_query": a.n_query, "n_database": a.n_database}
    if a.dataset == "synthetic-aurora" and pre is not None:
        opts["preprocess"] = pre
    t = time.perf_counter()
    sp = load_splits(
        a.dataset,
        a.data,
        protocol,
        data_seed=a.data_seed,
        **(opts if a.dataset == "synthetic-aurora" else {}),
    )
    pre = pre or sp["preprocess"]
    (xt, yt), (xq, yq), (xd, yd) = sp["train"], sp["query"], sp["db"]
    log(f"data: {sp['info']} ({time.perf_counter() - t:.1f} s)")
    result = {
        "dataset": a.dataset,
        "protocol": protocol,
        "sizes": {"train": len(yt), "query": len(yq), "database": len(yd)},
        "bits": bits_list,
        "hashing": {},
        "real": {},
        "seconds": {},
    }

    features = {}
    if "gist" in feats_wanted:
        t = time.perf_counter()
        features["gist"] = tuple(
            gist_cached(x, n) for x, n in ((xt, "train"), (xq, "query"), (xd, "db"))
        )
        result["seconds"]["gist"] = round(time.perf_counter() - t, 1)
    cnn_sets = None
    if model is not None and ("cnn" in feats_wanted or real):
        t = time.perf_counter()
        ftr, cnn_sets, he, mapinfo = cnn_features(model, sp, pre, scales, a.batch)
        result["seconds"]["cnn_features"] = round(time.perf_counter() - t, 1)
        result["model"] = provenance(cfg, a.dataset, protocol, a.data_seed) | mapinfo
        if "cnn" in feats_wanted:
            features["cnn"] = (ftr, cnn_sets["query"]["feat"], cnn_sets["db"]["feat"])
        qc, dc = ours_codes(model, cfg, sp, pre, a.batch)
        result["ours"] = {
            "bits": int(cfg["bits"]),
            "map": round(float(mean_average_precision(qc, dc, yq, yd, ties="index")), 4),
        }

    for fname, (ftr_, fq, fd) in features.items():
        rows = {}
        for m in methods:
            rows[m] = {}
            for b in bits_list:
                opt = {}
                if m == "ksh":
                    opt = {"n_anchors": a.ksh_anchors, "n_labelled": a.ksh_labelled}
                t = time.perf_counter()
                try:
                    h = fit_hasher(m, ftr_, yt if m in SUPERVISED else None, b, a.seed, **opt)
                except ValueError as exc:
                    rows[m][b] = {"map": None, "error": str(exc)}
                    continue
                fit_s = time.perf_counter() - t
                mp = mean_average_precision(h.encode(fq), h.encode(fd), yq, yd, ties="index")
                rows[m][b] = {"map": round(float(mp), 4), "fit_s": round(fit_s, 2)}
                log(f"{fname:5s} {m:5s} {b:3d} bits: MAP {mp:.4f} (fit {fit_s:.1f} s)")
        result["hashing"][fname] = {"dim": int(ftr_.shape[1]), "rows": rows}

    if cnn_sets is not None:
        for r in real:
            t = time.perf_counter()
            if r == "he":
                aps = np.concatenate(
                    [
                        average_precision_scores(S, yq[s : s + len(S)], yd)
                        for s, S in he.scores(cnn_sets["query"]["he"], cnn_sets["db"]["he"])
                    ]
                )
                mp, dim = float(aps.mean()), None
            else:
                q, d = cnn_sets["query"][r], cnn_sets["db"][r]
                mp, dim = cosine_map(q, d, yq, yd), int(q.shape[1])
            result["real"][r] = {"map": round(mp, 4), "dim": dim}
            log(f"{r:9s}: MAP {mp:.4f} ({time.perf_counter() - t:.1f} s)")
        if a.query_time:
            query_times(result, (qc, dc), cnn_sets, he, real, a.query_time)

    result["seconds"]["total"] = round(time.perf_counter() - t_start, 1)
    result["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": a.threads,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    print_tables(result)
    if a.json:
        argv_used = sys.argv if argv is None else ["benchmarks/bench_baselines.py", *argv]
        _record.write(a.json, result, argv=argv_used)
    print(json.dumps(result))
    return result


def print_tables(r):
    bits = r["bits"]
    s = r["sizes"]
    print(
        f"\n{r['dataset']} / {r['protocol']}: {s['query']} queries, {s['train']} training, "
        f"{s['database']} database; MAP over the whole database, ties by index\n"
    )
    print("| features | method | " + " | ".join(f"{b} bits" for b in bits) + " |")
    print("| --- | --- |" + " --- |" * len(bits))
    for fname, block in r["hashing"].items():
        for m, row in block["rows"].items():
            cells = []
            for b in bits:
                v = row.get(b, {}).get("map")
                cells.append("-" if v is None else f"{v:.4f}")
            print(f"| {fname} ({block['dim']}-d) | {m.upper()} | " + " | ".join(cells) + " |")
    if "ours" in r:
        o = r["ours"]
        cells = [f"{o['map']:.4f}" if b == o["bits"] else "" for b in bits]
        if o["bits"] in bits:
            print(f"| end-to-end | ours ({r['model']['arch']}) | " + " | ".join(cells) + " |")
        else:
            print(f"\nours ({r['model']['arch']}, {o['bits']} bits): MAP {o['map']:.4f}")
    if r["real"]:
        mi = r["model"]
        print(f"\nreal-valued, cosine; conv map {mi['map_hw']} x {mi['channels']}\n")
        print("| descriptor | dims | MAP |\n| --- | --- | --- |")
        for k, v in r["real"].items():
            print(f"| {k} | {v['dim'] or '-'} | {v['map']:.4f} |")
    if "query_time" in r:
        print_table5(r)
    if "model" in r:
        print(f"\nmodel: {r['model']}")
    print(f"seconds: {r['seconds']}\n")


def print_table5(r):
    """Table 5's shape: MAP and mean query time per method, from one run."""
    qt = r["query_time"]
    print(
        f"\nTable 5: MAP and ms per query (ranking all {qt['database']} database items, "
        f"mean of {qt['queries']} queries, {qt['threads']} thread)\n"
    )
    print("| method | descriptor | MAP | ms / query |\n| --- | --- | --- | --- |")
    names = {"he": "HE", "vlad": "VLAD", "mac": "MAC", "rmac": "R-MAC", "rmac-pw": "R-MAC+PW"}
    names["msrmac-pw"] = "MS-RMAC (+PW)"
    for k, v in r["real"].items():
        desc = f"{v['dim']}-d float" if v["dim"] else "visual words + 64-bit signatures"
        print(f"| {names.get(k, k)} | {desc} | {v['map']:.4f} | {v['ms_per_query']:.3f} |")
    o = r["ours"]
    print(f"| ours | {o['bits']}-bit code | {o['map']:.4f} | {o['ms_per_query']:.3f} |")


if __name__ == "__main__":
    main()
