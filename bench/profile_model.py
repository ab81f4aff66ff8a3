"""Whole-model INT8 vs FP32 on the CPU, and where the INT8 time goes, per op type.

    python bench/profile_model.py                          # ResNet50 + MobileNetV2, batch 1 and 16
    python bench/profile_model.py --models mobilenetv2 --batch 1 --repeats 20
    python bench/profile_model.py --no-profile             # end-to-end times only
    python bench/profile_model.py --ab-env TFQ8_AVX2_S16_DRIVER=v1   # + INT8 packed the old way
    python bench/profile_model.py --models mobilenetv2 --batch 1 --per-node   # + every op: µs, GMAC/s
    python bench/profile_model.py --config u8_safe_pairs=True --ab-env TFQ8_AVX2_U8=0 --no-profile

For each Keras model (weights=None, 224×224; or the 1-D nets tcn1d and m5audio) it quantizes
with tfq8.quantize (method minmax, 16 random calibration inputs), then, with 2 threads (intra 2,
inter 1):

1. End to end: FP32 (tf.function over the Keras model) and INT8 (the QuantizedModel's
   tf.function) called alternately, repeat by repeat, so both see the same load on a shared
   machine; median ms per batch, and the FP32/INT8 ratio.
2. Per op: the INT8 GraphDef in a tf.compat.v1 Session, run with FULL_TRACE; the step stats'
   per-node wall times (op start → op end) are summed per category, median over --trace-runs
   traces. Convs are split by shape: 1×1 small-K (input channels ≤ 64), 1×1 larger K,
   3×3 / k×k, and the first conv (few input channels). Inter-op parallelism is 1, so the ops run
   one after another and the per-op sums add up to about the step time; the rest ("gap") is
   the executor's own cost between ops.
"""
import argparse
import collections
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)

import tfq8  # noqa: E402
import tfq8.export  # noqa: E402

def _tcn1d():
    """A TCN: 1×1 stem, six residual blocks of two causal dilated Conv1D + BN (rates 1…32),
    global max pooling; 4096 steps × 16 features (the conv1d pass, dilated convs, a Max)."""
    L = tf.keras.layers
    inp = tf.keras.Input((4096, 16))
    y = L.Conv1D(64, 1, activation="relu")(inp)
    for r in (1, 2, 4, 8, 16, 32):
        z = L.ReLU()(L.BatchNormalization()(L.Conv1D(64, 3, padding="causal", dilation_rate=r)(y)))
        z = L.BatchNormalization()(L.Conv1D(64, 3, padding="causal", dilation_rate=r)(z))
        y = L.ReLU()(L.Add()([y, z]))
    return tf.keras.Model(inp, L.Dense(5)(L.GlobalMaxPooling1D()(y)))


def _m5audio():
    """M5 (Dai et al. 2017) on 1 s of 16 kHz audio: Conv1D(80, stride 4) and three
    Conv1D/BN/ReLU/MaxPooling1D blocks, global average pooling, 35 classes."""
    L = tf.keras.layers
    inp = tf.keras.Input((16000, 1))
    y = L.Conv1D(64, 80, strides=4, padding="same")(inp)
    y = L.MaxPooling1D(4)(L.ReLU()(L.BatchNormalization()(y)))
    for c in (64, 128, 256):
        y = L.Conv1D(c, 3, padding="same")(y)
        y = L.MaxPooling1D(4)(L.ReLU()(L.BatchNormalization()(y)))
    return tf.keras.Model(inp, L.Dense(35)(L.GlobalAveragePooling1D()(y)))


MODELS = {
    "resnet50": lambda: tf.keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3)),
    "mobilenetv2": lambda: tf.keras.applications.MobileNetV2(weights=None,
                                                             input_shape=(224, 224, 3)),
    # swish / hard-swish tables and squeeze-and-excitation gates (Tfq8Lookup, Tfq8ChannelMul)
    "efficientnetb0": lambda: tf.keras.applications.EfficientNetB0(weights=None,
                                                                   input_shape=(224, 224, 3)),
    "mobilenetv3large": lambda: tf.keras.applications.MobileNetV3Large(
        weights=None, input_shape=(224, 224, 3)),
    # grouped (depthwise) convs, Dense on NHWC as 1×1 convs, GELU tables, FP32 LayerNorms
    "convnexttiny": lambda: tf.keras.applications.ConvNeXtTiny(weights=None,
                                                               input_shape=(224, 224, 3)),
    # 1-D conv networks (not Keras applications)
    "tcn1d": _tcn1d,
    "m5audio": _m5audio,
}


def _shape(model):
    return tuple(model.inputs[0].shape[1:])


def quantize(name, config=None):
    model = MODELS[name]()
    calib = np.random.RandomState(0).uniform(-1, 1, (16,) + _shape(model)).astype(np.float32)
    t0 = time.perf_counter()
    fields = {"method": "minmax", "verbose": False, **(config or {})}
    q = tfq8.quantize(model, calib, tfq8.QuantConfig(**fields))
    return model, q, time.perf_counter() - t0


def with_env(fn, env):
    """fn, called with the environment variables env set (and restored after each call):
    switches read when ops pack their weights and switches read on every call both apply."""
    def call(x):
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return fn(x)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k)
                else:
                    os.environ[k] = v
    return call


def time_e2e(model, q, batch, repeats, q_ab=None, ab_env=None):
    """Median ms of FP32, INT8 and (q_ab: a second INT8 model run with the environment ab_env)
    the A/B INT8 variant, called alternately."""
    fp32 = tf.function(lambda x: model(x, training=False))
    x = tf.constant(np.random.RandomState(1).uniform(-1, 1, (batch,) + _shape(model))
                    .astype(np.float32))
    if q_ab is not None:
        q_ab = with_env(q_ab, ab_env)
    for _ in range(2):
        fp32(x).numpy()
        q(x).numpy()
        if q_ab is not None:
            q_ab(x).numpy()
    fns = [fp32, q] + ([q_ab] if q_ab is not None else [])
    times = [[] for _ in fns]
    for r in range(repeats):
        # rotate the order: a fixed one favoured whichever INT8 model ran second (its input and
        # the pool threads warm; measured 5-10 % on MobileNetV2 b1 before session 13)
        for i in range(len(fns)):
            j = (i + r) % len(fns)
            t0 = time.perf_counter()
            fns[j](x).numpy()
            times[j].append(time.perf_counter() - t0)
    return [statistics.median(tl) * 1e3 for tl in times]


def _const_shapes(gd):
    shapes = {}
    for n in gd.node:
        if n.op == "Const":
            shapes[n.name] = [d.size for d in n.attr["value"].tensor.tensor_shape.dim]
    return shapes


def categorize(gd):
    """node name → category."""
    shapes = _const_shapes(gd)
    cat = {}
    for n in gd.node:
        op = n.op
        if op == "Tfq8Conv2D":
            kh, kw, ic, _ = shapes.get(n.input[1].split(":")[0], [0, 0, 0, 0])
            summ = "+sum" if n.attr["num_summand"].i else ""
            if kh == 1 and kw == 1:
                c = f"conv 1x1 K<=64{summ}" if ic <= 64 else f"conv 1x1 K>64{summ}"
            elif ic < 8:
                c = "conv first (IC<8)"
            else:
                c = f"conv {kh}x{kw}{summ}"
            s = list(n.attr["strides"].list.i)
            if s and max(s) > 1:
                c += " s2"
            cat[n.name] = c
        elif op == "Tfq8DepthwiseConv2D":
            s = list(n.attr["strides"].list.i)
            cat[n.name] = "depthwise s2" if s and max(s) > 1 else "depthwise s1"
        else:
            cat[n.name] = op
    return cat


def profile(q, batch, runs, per_node_out=None):
    gd = q.graph_def
    cat = categorize(gd)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(gd, name="")
    cfg = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=2,
                                   inter_op_parallelism_threads=1)
    sess = tf.compat.v1.Session(graph=graph, config=cfg)
    inp = graph.get_tensor_by_name(q.inputs[0].tensor)
    out = graph.get_tensor_by_name(q.outputs[0].tensor)
    x = np.random.RandomState(1).uniform(-1, 1, (batch,) + tuple(inp.shape[1:])
                                         ).astype(np.float32)
    for _ in range(3):
        sess.run(out, {inp: x})
    plain = []
    for _ in range(max(runs, 5)):
        t0 = time.perf_counter()
        sess.run(out, {inp: x})
        plain.append(time.perf_counter() - t0)
    per_run = []
    per_node = collections.defaultdict(list)
    node_shape = {}
    counts = collections.Counter()
    for r in range(runs):
        opts = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        md = tf.compat.v1.RunMetadata()
        t0 = time.perf_counter()
        sess.run(out, {inp: x}, options=opts, run_metadata=md)
        wall = time.perf_counter() - t0
        sums = collections.Counter()
        first, last = None, None
        for dev in md.step_stats.dev_stats:
            for ns in dev.node_stats:
                name = ns.node_name.split(":")[0]
                if name in ("_SOURCE", "_SINK") or name.startswith("_"):
                    continue
                us = ns.all_end_rel_micros
                c = cat.get(name, "other")
                sums[c] += us
                per_node[name].append(us)
                if ns.output and name not in node_shape:
                    node_shape[name] = [d.size for d in
                                        ns.output[0].tensor_description.shape.dim]
                if r == 0:
                    counts[c] += 1
                st = ns.all_start_micros
                first = st if first is None else min(first, st)
                last = st + us if last is None else max(last, st + us)
        sums["(step, first op start to last op end)"] = last - first
        sums["(session.run wall, traced)"] = wall * 1e6
        per_run.append(sums)
    sess.close()
    keys = set().union(*per_run)
    med = {k: statistics.median(s.get(k, 0) for s in per_run) / 1e3 for k in keys}
    nodes = []
    if per_node_out is not None:
        shapes = _const_shapes(gd)
        ops = {n.name: n for n in gd.node}
        for name, us in per_node.items():
            n = ops.get(name)
            if n is None or n.op in ("Const", "Identity", "Placeholder"):
                continue
            out = node_shape.get(name, [])
            desc, macs = n.op, 0
            if n.op in ("Tfq8Conv2D", "Tfq8DepthwiseConv2D", "Tfq8MatMul") and out:
                f = shapes.get(n.input[1].split(":")[0], [])
                if n.op == "Tfq8Conv2D" and len(f) == 4 and len(out) == 4:
                    macs = out[0] * out[1] * out[2] * f[0] * f[1] * f[2] * f[3]
                    desc = (f"conv {f[0]}x{f[1]} {f[2]}->{f[3]} out {out[1]}x{out[2]}"
                            + (" +sum" if n.attr["num_summand"].i else ""))
                elif n.op == "Tfq8DepthwiseConv2D" and len(f) == 4 and len(out) == 4:
                    macs = out[0] * out[1] * out[2] * out[3] * f[0] * f[1]
                    desc = f"dw {f[0]}x{f[1]} c{out[3]} out {out[1]}x{out[2]}"
                elif n.op == "Tfq8MatMul" and len(f) == 2:
                    macs = out[0] * f[0] * f[1]
                    desc = f"matmul {f[0]}->{f[1]}"
            nodes.append((name, desc, statistics.median(us), macs))
        per_node_out.extend(nodes)
    return med, counts, statistics.median(plain) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+",
                    default=[m for m in MODELS if m not in ("tcn1d", "m5audio")])
    ap.add_argument("--batch", type=int, action="append")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--trace-runs", type=int, default=5)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--per-node", action="store_true",
                    help="also list every op in graph order: median us, GMAC/s")
    ap.add_argument("--ab-env", action="append", default=[],
                    help="KEY=VALUE: also time a second INT8 instance packed with this "
                         "environment (e.g. TFQ8_AVX2_S16_DRIVER=v1), interleaved")
    ap.add_argument("--config", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="QuantConfig fields, e.g. u8_safe_pairs=True (with --ab-env "
                         "TFQ8_AVX2_U8=0: the same weights on the vpmaddubsw and the s16 kernel)")
    args = ap.parse_args()
    from bench.zoo import config_fields
    config = config_fields(args.config, ap)
    batches = args.batch or [1, 16]
    print(f"CPU threads: intra 2, inter 1; load average {os.getloadavg()[0]:.1f}")
    rows = []
    for name in args.models:
        model, q, tq = quantize(name, config)
        print(f"\n## {name} (quantized in {tq:.1f} s) ops: "
              + ", ".join(f"{k} {v}" for k, v in sorted(q.op_counts().items())
                          if k != "Const"))
        ab_env = dict(kv.split("=", 1) for kv in args.ab_env)
        q_ab = None
        if ab_env:
            q_ab = tfq8.export.make_callable(q.graph_def, q.inputs, q.outputs)
        for b in batches:
            t = time_e2e(model, q, b, max(3, args.repeats if b == 1 else args.repeats // 2),
                         q_ab, ab_env)
            f, i = t[0], t[1]
            rows.append((name, b, *t))
            ab = f"  INT8 {ab_env} {t[2]:.2f} ms" if q_ab is not None else ""
            print(f"{name} b{b}: FP32 {f:.2f} ms  INT8 {i:.2f} ms  FP32/INT8 {f / i:.2f}{ab}")
            if args.no_profile:
                continue
            nodes = [] if args.per_node else None
            med, counts, plain = profile(q, b, args.trace_runs, nodes)
            total = sum(v for k, v in med.items() if not k.startswith("("))
            print(f"  INT8 Session.run untraced median {plain:.2f} ms; traced step: "
                  f"{med['(step, first op start to last op end)']:.2f} ms, "
                  f"sum of op times {total:.2f} ms")
            print(f"  {'category':34s} {'n':>4s} {'ms':>9s} {'%':>6s}")
            for k, v in sorted(med.items(), key=lambda kv: -kv[1]):
                if k.startswith("("):
                    continue
                print(f"  {k:34s} {counts.get(k, 0):4d} {v:9.3f} {100 * v / total:6.1f}")
            if nodes:
                print(f"  {'op':44s} {'us':>8s} {'GMAC/s':>7s}")
                for name, desc, us, macs in nodes:
                    g = f"{macs / us / 1e3:7.1f}" if macs and us else "       "
                    print(f"  {desc[:44]:44s} {us:8.1f} {g}")
    ab = " | INT8 A/B ms | FP32/A/B" if args.ab_env else ""
    print(f"\n| model | batch | FP32 ms | INT8 ms | FP32/INT8{ab} |\n| --- | ---: | ---: | ---: "
          f"| ---: |" + (" ---: | ---: |" if args.ab_env else ""))
    for name, b, f, i, *rest in rows:
        extra = f" {rest[0]:.2f} | {f / rest[0]:.2f} |" if rest else ""
        print(f"| {name} | {b} | {f:.2f} | {i:.2f} | {f / i:.2f} |{extra}")


if __name__ == "__main__":
    main()
