#!/usr/bin/python3
"""Approximate search side by side: imgserve's index, hnswlib and FAISS.

One run builds every engine on the same vectors and measures, for a sweep
of beam widths, queries/s on one thread against recall@10 (measured against
an exact search), build time and memory per vector, then prints
imgserve's queries/s relative to hnswlib's at equal recall.

Needs Debian's python3-numpy, python3-hnswlib and python3-faiss
(apt-get install python3-hnswlib python3-faiss), and Go. Data and ground
truth are cached in ~/.cache/imgserve/ann (or $XDG_CACHE_HOME/imgserve/ann).

    flock /tmp/imgserve-bench.lock /usr/bin/python3 bench/ann/run.py --n 100000
    flock /tmp/imgserve-bench.lock /usr/bin/python3 bench/ann/run.py --n 100000 --data clip

Datasets:
  clustered  512-d unit vectors drawn around cluster centres, with a
             decaying spectrum of variances (centres and spread alike), and
             Zipf-distributed cluster sizes: embeddings of real photo
             collections are clustered and anisotropic, and uniform noise
             is neither.
  clip       embeddings of generated images by the synthetic CLIP vision
             tower (internal/testmodels), through imgserve's own pipeline
             (written by go run ./bench/annbench -gen-clip).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

DIM = 512
K = 10


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    d = os.path.join(base, "imgserve", "ann")
    os.makedirs(d, exist_ok=True)
    return d


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def random_basis(rng, d):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q.astype(np.float32)


def clustered(n, nq, seed=17):
    """Returns (base, queries), unit float32 rows."""
    rng = np.random.default_rng(seed)
    ncl = max(100, n // 1000)
    idx = np.arange(1, DIM + 1, dtype=np.float32)
    centre_spec = idx ** -0.5
    noise_spec = idx ** -0.8
    b1, b2 = random_basis(rng, DIM), random_basis(rng, DIM)
    centres = (rng.standard_normal((ncl, DIM)).astype(np.float32) * centre_spec) @ b1.T
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    w = 1.0 / np.arange(1, ncl + 1) ** 0.7
    w /= w.sum()
    sigma = 0.7 / np.sqrt((noise_spec ** 2).sum())
    out = np.empty((n + nq, DIM), dtype=np.float32)
    step = 50000
    for lo in range(0, n + nq, step):
        m = min(step, n + nq - lo)
        lab = rng.choice(ncl, m, p=w)
        x = centres[lab] + sigma * ((rng.standard_normal((m, DIM)).astype(np.float32) * noise_spec) @ b2.T)
        out[lo:lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out[:n], out[n:]


def dataset(name, n, nq):
    d = cache_dir()
    prefix = os.path.join(d, "%s-%d" % (name, n))
    paths = prefix + ".base.f32", prefix + ".queries.f32", prefix + ".truth.i32"
    if all(os.path.exists(p) for p in paths):
        return paths
    t = time.time()
    if name == "clustered":
        base, queries = clustered(n, nq)
        base.tofile(paths[0])
        queries.tofile(paths[1])
    else:
        if not (os.path.exists(paths[0]) and os.path.exists(paths[1])):
            repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            subprocess.run(["go", "run", "./bench/annbench", "-gen-clip", prefix, "-n", str(n)], cwd=repo, check=True)
        base = np.fromfile(paths[0], dtype=np.float32).reshape(-1, DIM)
        queries = np.fromfile(paths[1], dtype=np.float32).reshape(-1, DIM)
    import faiss
    flat = faiss.IndexFlatIP(DIM)
    flat.add(base)
    _, truth = flat.search(queries, K)
    truth.astype(np.int32).tofile(paths[2])
    print("# dataset %s n=%d: %.0fs" % (name, n, time.time() - t), file=sys.stderr)
    return paths


def recall(found, truth):
    hits = 0
    for f, t in zip(found, truth):
        hits += len(set(f.tolist()) & set(t.tolist()))
    return hits / float(truth.size)


def timed_queries(search, queries, repeats):
    best, worst, res = 0.0, 1e18, None
    for _ in range(repeats):
        t = time.perf_counter()
        res = search(queries)
        qps = len(queries) / (time.perf_counter() - t)
        best, worst = max(best, qps), min(worst, qps)
    return res, best, worst


def run_hnswlib(base, queries, truth, args, out):
    import hnswlib
    r0 = rss_mib()
    p = hnswlib.Index(space="ip", dim=DIM)
    p.init_index(max_elements=len(base), ef_construction=args.efc, M=args.m)
    p.set_num_threads(args.threads)
    t = time.time()
    p.add_items(base, np.arange(len(base)))
    build = time.time() - t
    out({"engine": "hnswlib", "n": len(base), "m": args.m, "efc": args.efc, "build_s": build,
         "build_threads": args.threads, "bytes_per_vector": (rss_mib() - r0) * 2**20 / len(base)})
    p.set_num_threads(1)
    for ef in args.ef:
        p.set_ef(ef)
        (labels, _), qps, qmin = timed_queries(lambda q: p.knn_query(q, k=K, num_threads=1), queries, args.repeats)
        out({"engine": "hnswlib", "ef": ef, "recall": recall(labels, truth), "qps": qps, "qps_min": qmin, "threads": 1})
    del p


def run_faiss(base, queries, truth, args, out):
    import faiss
    variants = [("faiss-hnsw-flat", lambda: faiss.IndexHNSWFlat(DIM, args.m, faiss.METRIC_INNER_PRODUCT)),
                ("faiss-hnsw-sq8", lambda: faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_8bit, args.m, faiss.METRIC_INNER_PRODUCT))]
    for name, make in variants:
        if name not in args.faiss:
            continue
        r0 = rss_mib()
        idx = make()
        idx.hnsw.efConstruction = args.efc
        faiss.omp_set_num_threads(args.threads)
        t = time.time()
        if not idx.is_trained:
            idx.train(base[:min(len(base), 100000)])
        idx.add(base)
        build = time.time() - t
        out({"engine": name, "n": len(base), "m": args.m, "efc": args.efc, "build_s": build,
             "build_threads": args.threads, "bytes_per_vector": (rss_mib() - r0) * 2**20 / len(base)})
        faiss.omp_set_num_threads(1)
        for ef in args.ef:
            idx.hnsw.efSearch = ef
            (_, labels), qps, qmin = timed_queries(lambda q: idx.search(q, K), queries, args.repeats)
            out({"engine": name, "ef": ef, "recall": recall(labels, truth), "qps": qps, "qps_min": qmin, "threads": 1})
        del idx
    if "faiss-ivfpq" in args.faiss:
        nlist = int(4 * np.sqrt(len(base)))
        r0 = rss_mib()
        q = faiss.IndexFlatIP(DIM)
        idx = faiss.IndexIVFPQ(q, DIM, nlist, 64, 8, faiss.METRIC_INNER_PRODUCT)
        faiss.omp_set_num_threads(args.threads)
        t = time.time()
        idx.train(base[:min(len(base), 100000)])
        idx.add(base)
        build = time.time() - t
        out({"engine": "faiss-ivfpq", "n": len(base), "nlist": nlist, "pq": "64x8", "build_s": build,
             "build_threads": args.threads, "bytes_per_vector": (rss_mib() - r0) * 2**20 / len(base)})
        faiss.omp_set_num_threads(1)
        for nprobe in (4, 8, 16, 32, 64, 128):
            idx.nprobe = nprobe
            (_, labels), qps, qmin = timed_queries(lambda q: idx.search(q, K), queries, args.repeats)
            out({"engine": "faiss-ivfpq", "nprobe": nprobe, "recall": recall(labels, truth), "qps": qps, "qps_min": qmin, "threads": 1})
        del idx


def run_imgserve(paths, args, out):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    binary = os.path.join(cache_dir(), "annbench")
    subprocess.run(["go", "build", "-o", binary, "./bench/annbench"], cwd=repo, check=True)
    for storage in args.storage:
        cmd = [binary, "-base", paths[0], "-queries", paths[1], "-truth", paths[2], "-dim", str(DIM),
               "-storage", storage, "-m", str(args.m), "-efc", str(args.efc), "-threads", str(args.threads),
               "-ef", ",".join(map(str, args.ef)), "-repeats", str(args.repeats)]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
        for line in p.stdout.splitlines():
            rec = json.loads(line)
            rec["engine"] = "imgserve-" + storage
            out(rec)


def qps_at(points, target):
    """Queries/s at a recall, interpolated (in log qps) along a sweep."""
    pts = sorted((r["recall"], r["qps"]) for r in points)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1 and r1 > r0:
            f = (target - r0) / (r1 - r0)
            return float(np.exp(np.log(q0) + f * (np.log(q1) - np.log(q0))))
    if pts and pts[0][0] >= target:
        return None  # already above target at the narrowest beam: report nothing rather than guess
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--data", default="clustered", choices=["clustered", "clip"])
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2, help="threads for building; queries always use one")
    ap.add_argument("--ef", default="10,16,24,32,48,64,96,128,192,256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default="imgserve,hnswlib,faiss")
    ap.add_argument("--storage", default="int8,float32")
    ap.add_argument("--faiss", default="faiss-hnsw-flat,faiss-hnsw-sq8,faiss-ivfpq")
    ap.add_argument("--out", default="", help="also append the JSON lines to this file")
    args = ap.parse_args()
    args.ef = [int(x) for x in args.ef.split(",")]
    args.storage = args.storage.split(",")
    args.faiss = args.faiss.split(",")
    engines = args.engines.split(",")

    records = []

    def out(rec):
        rec.setdefault("data", args.data)
        records.append(rec)
        line = json.dumps(rec)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")

    paths = dataset(args.data, args.n, args.nq)
    out({"engine": "machine", "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": "),
         "cores": os.cpu_count(), "n": args.n, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    if "imgserve" in engines:
        run_imgserve(paths, args, out)
    base = np.fromfile(paths[0], dtype=np.float32).reshape(-1, DIM)
    queries = np.fromfile(paths[1], dtype=np.float32).reshape(-1, DIM)
    truth = np.fromfile(paths[2], dtype=np.int32).reshape(-1, K)
    if "hnswlib" in engines:
        run_hnswlib(base, queries, truth, args, out)
    if "faiss" in engines:
        run_faiss(base, queries, truth, args, out)

    with open("/proc/self/status") as f:
        hwm = [l for l in f if l.startswith("VmHWM:")][0].split()[1]
    out({"engine": "python", "peak_rss_mib": int(hwm) / 1024.0})
    sweeps = {}
    for r in records:
        if "recall" in r:
            sweeps.setdefault(r["engine"], []).append(r)
    print("\nqueries/s on one thread at recall@10 (interpolated); ratio to hnswlib", file=sys.stderr)
    for target in (0.90, 0.95, 0.98):
        ref = qps_at(sweeps.get("hnswlib", []), target)
        for eng, pts in sorted(sweeps.items()):
            q = qps_at(pts, target)
            ratio = "" if not (q and ref) else "  %.2fx hnswlib" % (q / ref)
            print("recall %.2f  %-18s %s%s" % (target, eng, "%8.0f" % q if q else "       -", ratio), file=sys.stderr)


if __name__ == "__main__":
    main()
