"""Whole-model speed: tfq8 INT8 against TF FP32 and the INT8 tools a user would pick instead,
side by side in one run, 2 threads, random-weight Keras 3 applications.

    bash bench/peers/setup_env.sh                       # once: the peers' own venv
    /tmp/tfq8-bench-venv/bin/python bench/models.py     # ResNet50 + MobileNetV2, batch 1 and 16
    /tmp/tfq8-bench-venv/bin/python bench/models.py --quick           # smoke test: b1, few reps
    ... bench/models.py --models resnet50 mobilenetv2 inceptionv3 --engines tf_fp32 tfq8 tflite

Engines (each engine × model in a process of its own, bench/peers/worker.py):
  tf_fp32         TF FP32: tf.function over the Keras 3 model (TF's default settings)
  tf_fp32_onednn  the same with TF_ENABLE_ONEDNN_OPTS=1 (off by default in TF 2.21's wheel)
  tfq8            tfq8.quantize(model, calibration images) — Python call and in-graph time
  tflite          TFLite full-INT8 (TFLiteConverter.from_keras_model, XNNPACK, num_threads=2)
  ort             ONNX Runtime static INT8 (tf2onnx → quantize_static), QOperator and QDQ
  inc_tfkeras     Intel Neural Compressor on the tf-keras (Keras 2) graph of the same model
  inc_keras3      Intel Neural Compressor on the Keras 3 graph (what TF 2.21 gives by default)
A peer that is missing or fails is reported as "n/a (reason)"; the run goes on.

Per cell: median latency over >= --reps calls (and >= --min-seconds) after --warmup calls, throughput (img/s), speedup
vs TF FP32 and vs the fastest peer (TFLite, ORT, INC; >1 means faster than it), the conversion
time, the cosine of the outputs (logits) vs the FP32 model, and "other CPU": how many cores'
worth of CPU other processes used while the cell was timed (the machine is shared: above ~0.1
the numbers are disturbed — engines whose thread pools spin, e.g. ONNX Runtime, suffer most). Writes results.json
and results.md to --out (default /tmp/tfq8-bench-models-<time>) and prints the tables.

Models: random weights, BatchNorm statistics set from a forward pass (so activations keep a
realistic scale), logits out (no softmax), inputs uniform in [-1, 1].
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "peers"))

import peer_common as C  # noqa: E402  (numpy only; TF is imported by the workers)

ENGINES = ["tf_fp32", "tf_fp32_onednn", "tfq8", "tflite", "ort", "inc_tfkeras", "inc_keras3"]
PEERS = ["tflite", "ort_qop", "ort_qdq", "inc_tfkeras", "inc_keras3"]
ORDER = ["tf_fp32", "tf_fp32_onednn", "tfq8", "tflite", "ort_qop", "ort_qdq", "inc_tfkeras",
         "inc_keras3"]
SHORT = {"tf_fp32": "TF FP32", "tf_fp32_onednn": "TF FP32 oneDNN", "tfq8": "tfq8 INT8",
         "tflite": "TFLite INT8", "ort_qop": "ORT QOperator", "ort_qdq": "ORT QDQ",
         "inc_tfkeras": "INC (tf-keras)", "inc_keras3": "INC (Keras 3)"}
SUB_ENGINES = {"ort": ["ort_qop", "ort_qdq"]}
BUSY = 0.25  # cores' worth of CPU used by other processes above which a cell is marked


def worker_env(engine):
    env = C.thread_env()
    if engine in ("inc_tfkeras", "inc_keras3", "tf_fp32_onednn"):
        # INC's quantized graph only runs through TF's oneDNN rewrite (else "Missing 0-th output").
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    else:
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)  # TF's default
    if engine == "tfq8" and SNAPSHOT:
        env["TFQ8_BENCH_SRC"] = SNAPSHOT
    return env


SNAPSHOT = None


def snapshot_tfq8(out_dir):
    """Copies the work tree's tfq8/ (python + built op library) into out_dir/src, so every tfq8
    cell of this run uses the same build even if someone rebuilds the library meanwhile.
    Returns (path, library sha256 prefix, library mtime) or (None, reason, None)."""
    import hashlib
    import shutil
    src = os.path.join(REPO, "tfq8")
    lib = os.path.join(src, "libtfq8_ops.so")
    if not os.path.exists(lib):
        return None, "no tfq8/libtfq8_ops.so (python setup.py build_ext --inplace)", None
    dst = os.path.join(out_dir, "src")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, os.path.join(dst, "tfq8"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.o"))
    with open(os.path.join(dst, "tfq8", "libtfq8_ops.so"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()[:16]
    mtime = datetime.datetime.fromtimestamp(os.path.getmtime(lib)).isoformat(timespec="seconds")
    return dst, sha, mtime


def last_error_line(text):
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ("Error" in ln or "Exception" in ln or "Killed" in ln) and not ln.startswith("File "):
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def run_worker(args, engine, model, out_dir):
    out_json = os.path.join(out_dir, f"{engine}_{model}.json")
    log_path = os.path.join(out_dir, f"{engine}_{model}.log")
    cmd = [args.python, os.path.join(HERE, "peers", "worker.py"), "--engine", engine,
           "--model", model, "--batches", *map(str, args.batches),
           "--graph-time-batches", *map(str, args.graph_time_batches),
           "--reps", str(args.reps), "--warmup", str(args.warmup), "--calib", str(args.calib),
           "--min-seconds", str(args.min_seconds),
           "--out", out_json]
    subs = SUB_ENGINES.get(engine, [engine])
    t0 = time.time()
    print(f"  {engine:15s} {model:12s} ...", end="", flush=True)
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                  env=worker_env(engine), timeout=args.timeout)
        rc = proc.returncode
        reason = None
    except subprocess.TimeoutExpired:
        rc, reason = -1, f"timed out after {args.timeout} s"
    dt = time.time() - t0
    rows = None
    if os.path.exists(out_json):
        try:
            with open(out_json) as f:
                rows = json.load(f)
        except ValueError:
            rows = None
    if rows is None:
        if reason is None:
            with open(log_path, errors="replace") as f:
                reason = f"worker exited {rc}: " + last_error_line(f.read())
        rows = [C.na(e, model, b, reason) for e in subs for b in args.batches]
    for r in rows:
        r["log"] = log_path
    status = ", ".join(f"{r['engine']} b{r['batch']}: " + (f"{r['median_ms']:.2f} ms"
                       if r["status"] == "ok" else "n/a") for r in rows)
    print(f" {dt:5.0f} s  {status}", flush=True)
    return rows


def add_ratios(rows):
    by_cell = {}
    for r in rows:
        by_cell.setdefault((r["model"], r["batch"]), {})[r["engine"]] = r
    for (model, batch), cell in by_cell.items():
        fp32 = cell.get("tf_fp32")
        fp32_ms = fp32["median_ms"] if fp32 and fp32["status"] == "ok" else None
        peers = [cell[e] for e in PEERS if e in cell and cell[e]["status"] == "ok"]
        fastest = min(peers, key=lambda r: r["median_ms"]) if peers else None
        for r in cell.values():
            if r["status"] != "ok":
                continue
            if fp32_ms:
                r["speedup_vs_tf_fp32"] = fp32_ms / r["median_ms"]
            if fastest:
                r["fastest_peer"] = fastest["engine"]
                r["speedup_vs_fastest_peer"] = fastest["median_ms"] / r["median_ms"]
                if r.get("graph_ms"):
                    r["graph_speedup_vs_fastest_peer"] = fastest["median_ms"] / r["graph_ms"]
    return by_cell


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) and v == v else "–"


def tables(rows, by_cell, meta):
    out = []
    out.append(f"Machine: {meta['cpu']}, {meta['nproc']} cores; {meta['threads']} threads per "
               f"engine; TF {meta['versions'].get('tensorflow', '?')}; load average at start "
               f"{meta['loadavg_start']:.2f}; repo {meta['git']}")
    out.append("")
    out.append("### Median latency, ms (lower is better)")
    out.append("")
    cols = [e for e in ORDER if any(r["engine"] == e for r in rows)]
    head = ["model", "batch"] + [SHORT[e] for e in cols] + ["tfq8 graph", "fastest peer",
                                                            "tfq8 vs fastest peer"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for (model, batch), cell in by_cell.items():
        line = [model, str(batch)]
        for e in cols:
            r = cell.get(e)
            if r is None:
                line.append("")
            elif r["status"] == "ok":
                busy = (r.get("other_cpu_cores") or 0) > BUSY
                line.append(f"{r['median_ms']:.2f}" + ("*" if busy else ""))
            else:
                line.append("n/a")
        q = cell.get("tfq8", {})
        line.append(fmt(q.get("graph_ms"), ".2f"))
        fp = q.get("fastest_peer") or next((r.get("fastest_peer") for r in cell.values()
                                            if r.get("fastest_peer")), None)
        line.append(SHORT.get(fp, "–") if fp else "–")
        s = q.get("speedup_vs_fastest_peer")
        g = q.get("graph_speedup_vs_fastest_peer")
        line.append((f"{s:.2f}×" if s else "–") + (f" (graph {g:.2f}×)" if g else ""))
        out.append("| " + " | ".join(line) + " |")
    out.append("")
    out.append(f"\\* other processes used more than {BUSY} of a core while this cell was timed "
               f"(see \"other CPU\" below): the number is inflated.")
    out.append("")
    out.append("### Per engine")
    out.append("")
    head = ["model", "batch", "engine", "median ms", "p10–p90 ms", "img/s", "vs TF FP32",
            "vs fastest peer", "graph ms", "convert s", "cos vs FP32", "other CPU"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for (model, batch), cell in by_cell.items():
        for e in ORDER:
            r = cell.get(e)
            if r is None:
                continue
            label = r.get("label", SHORT.get(e, e))
            if r["status"] != "ok":
                out.append(f"| {model} | {batch} | {SHORT.get(e, e)} | n/a ({r['reason']}) |"
                           + " |" * (len(head) - 4))
                continue
            out.append("| " + " | ".join([
                model, str(batch), label, f"{r['median_ms']:.2f}",
                f"{r['p10_ms']:.2f}–{r['p90_ms']:.2f}", f"{r['img_per_s']:.1f}",
                fmt(r.get("speedup_vs_tf_fp32"), ".2f") + "×",
                fmt(r.get("speedup_vs_fastest_peer"), ".2f") + "×",
                fmt(r.get("graph_ms"), ".2f"), fmt(r.get("convert_s"), ".0f"),
                fmt(r.get("cos_vs_fp32"), ".4f"), fmt(r.get("other_cpu_cores"), ".2f")]) + " |")
    return "\n".join(out)


def versions():
    from importlib import metadata
    v = {}
    for name in ("tensorflow", "keras", "tf-keras", "onnxruntime", "onnx", "tf2onnx",
                 "neural-compressor-tf", "numpy"):
        try:
            v[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            v[name] = None
    return v


def cpu_name():
    """'<model name> [int8-relevant flags]' from /proc/cpuinfo."""
    name, flags = platform.processor() or "?", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name in ("?", platform.processor()):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = [fl for fl in ("avx2", "avx512f", "avx512_vnni", "avx_vnni",
                                           "amx_int8") if fl in have]
                    break
    except OSError:
        pass
    return f"{name} [{' '.join(flags) or 'no avx2'}]"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet50", "mobilenetv2"],
                   choices=sorted(C.IMAGE))
    p.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    p.add_argument("--batches", type=int, nargs="+", default=None, help="default 1 16")
    p.add_argument("--reps", type=int, default=None, help="timed calls per cell (default 20)")
    p.add_argument("--warmup", type=int, default=None, help="default 5")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="time each cell for at least this long (default 2; 0 with --quick)")
    p.add_argument("--calib", type=int, default=None, help="calibration images (default 32)")
    p.add_argument("--graph-time-batches", type=int, nargs="*", default=[1],
                   help="batches at which TF FP32 and tfq8 are also timed inside one graph")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: batch 1 only, 5 reps, 2 warm-up, 8 calibration images")
    p.add_argument("--out", default=None, help="output dir (default /tmp/tfq8-bench-models-…)")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for the workers (the bench venv's python)")
    p.add_argument("--timeout", type=int, default=2400, help="seconds per worker")
    p.add_argument("--no-snapshot", action="store_true",
                   help="import tfq8 from the work tree in each tfq8 worker instead of a copy "
                        "taken at the start")
    p.add_argument("--from-json", metavar="RESULTS_JSON",
                   help="print the tables of an earlier run's results.json and exit")
    args = p.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            data = json.load(f)
        print(tables(data["results"], add_ratios(data["results"]), data["meta"]))
        return 0
    q = args.quick
    args.batches = args.batches or ([1] if q else [1, 16])
    args.reps = args.reps or (5 if q else 20)
    args.warmup = args.warmup if args.warmup is not None else (2 if q else 5)
    args.calib = args.calib or (8 if q else 32)
    if args.min_seconds is None:
        args.min_seconds = 0.0 if q else 2.0
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = args.out or f"/tmp/tfq8-bench-models-{stamp}"
    os.makedirs(out_dir, exist_ok=True)
    try:
        git = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h %s"],
                             capture_output=True, text=True).stdout.strip()[:80]
    except OSError:
        git = "?"
    meta = {"time": stamp, "cpu": cpu_name(), "nproc": os.cpu_count(), "threads": C.THREADS,
            "python": args.python, "versions": versions(), "git": git,
            "loadavg_start": os.getloadavg()[0], "args": vars(args)}
    global SNAPSHOT
    if "tfq8" in args.engines and not args.no_snapshot:
        SNAPSHOT, sha, mtime = snapshot_tfq8(out_dir)
        meta["tfq8_snapshot"] = {"path": SNAPSHOT, "lib_sha256": sha, "lib_mtime": mtime}
    print(f"bench/models.py → {out_dir}")
    print(f"{meta['cpu']}, {meta['nproc']} cores, load average {meta['loadavg_start']:.2f}")
    if meta["loadavg_start"] > 1.0:
        print(f"WARNING: load average {meta['loadavg_start']:.2f}: other processes compete for "
              f"the cores; the numbers will be noisy.")
    rows = []
    for model in args.models:
        for engine in args.engines:
            rows += run_worker(args, engine, model, out_dir)
    meta["loadavg_end"] = os.getloadavg()[0]
    rows.sort(key=lambda r: (args.models.index(r["model"]), r["batch"],
                             ORDER.index(r["engine"]) if r["engine"] in ORDER else 99))
    by_cell = add_ratios(rows)
    text = tables(rows, by_cell, meta)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=1, default=str)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text + "\n")
    print()
    print(text)
    print(f"\nresults: {out_dir}/results.json, results.md; worker logs beside them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
