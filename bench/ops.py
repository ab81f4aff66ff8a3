"""Times Tfq8Conv2D on every ResNet-50 and MobileNetV2 (224×224) regular / pointwise conv shape
against TF's FP32 tf.nn.conv2d on the same shapes, side by side in one run.

    python bench/ops.py                      # default path (TFQ8_ISA or the best the CPU has)
    python bench/ops.py --isa avx2 --isa amx --batch 1 --batch 16 --net resnet50
    python bench/ops.py --isa avx2 --isa avx2-c4     # AVX2: the s16 kernel vs the older c4 one
    python bench/ops.py --isa avx2 --isa avx2-direct # AVX2: 3×3 convs Winograd vs direct

A path is a TFQ8_ISA value, or avx2-c4 (TFQ8_ISA=avx2 with TFQ8_AVX2_KERNEL=c4: the older
2x32c4 widening kernel, kept for comparison), or avx2-v1 (TFQ8_AVX2_S16_DRIVER=v1: the s16
kernel with 1×1 inputs widened to u16 whole, up front, instead of per task in cache), or
avx2-direct (TFQ8_WINOGRAD=0: 3×3 stride-1 convs on the direct s16 kernel, not exact Winograd
F(2×2, 3×3)). The kernel each path really runs is read from the
library's TFQ8_VERBOSE log and printed with the CPU model and its int8 ISA flags.

Each op is timed inside a tf.function as a chain of R calls (control dependencies, so they run
one after another), minus the same function with one call, divided by R-1: this removes the
~240 µs fixed cost of calling a tf.function. Median of --repeats. 2 threads (intra=2, inter=1).
Prints per layer: time, int8 GOP/s (2·MACs/s), % of the path's peak, FP32 time and ratio;
then per-network totals (each shape weighted by how often the network has it).
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
# No Grappler: it would merge the identical calls of a timing chain. FP32 is timed as a bare
# Conv2D (oneDNN), the INT8 op with its fused bias + ReLU + requantize epilogue.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

import tfq8  # noqa: E402

# Peak int8 throughput of 2 cores, GOP/s (2 ops per MAC), at ~4 GHz / ~3 GHz (AVX2 machines):
# AMX 1024 MAC/cycle/core; AVX512-VNNI 2×64; AVX2 widening 2×16 vpmaddwd MACs per cycle.
PEAK_GOPS = {"amx": 16000.0, "avx512vnni": 2000.0, "avx2": 384.0, "ref": 0.0}

Conv = collections.namedtuple("Conv", "name h w ic oc k stride pad")


def resnet50():
    layers = [Conv("conv1", 224, 224, 3, 64, 7, 2, 3)]
    size, cin = 56, 64
    for stage, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                     (512, 3, 2)], start=2):
        for b in range(blocks):
            s = stride if b == 0 else 1
            out = size // s
            layers.append(Conv(f"s{stage}b{b}_1x1a", size, size, cin, width, 1, s, 0))
            layers.append(Conv(f"s{stage}b{b}_3x3", out, out, width, width, 3, 1, 1))
            layers.append(Conv(f"s{stage}b{b}_1x1b", out, out, width, 4 * width, 1, 1, 0))
            if b == 0:
                layers.append(Conv(f"s{stage}b{b}_short", size, size, cin, 4 * width, 1, s, 0))
            cin, size = 4 * width, out
    return layers


def mobilenet_v2():
    layers = [Conv("conv1", 224, 224, 3, 32, 3, 2, 1)]
    size, cin = 112, 32
    for i, (t, c, n, s) in enumerate([(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]):
        for b in range(n):
            stride = s if b == 0 else 1
            if t != 1:
                layers.append(Conv(f"b{i}.{b}_expand", size, size, cin, cin * t, 1, 1, 0))
            size = (size + stride - 1) // stride  # the depthwise conv (not timed here) strides
            layers.append(Conv(f"b{i}.{b}_project", size, size, cin * t, c, 1, 1, 0))
            cin = c
    layers.append(Conv("conv_last", size, size, cin, 1280, 1, 1, 0))
    return layers


NETS = {"resnet50": resnet50, "mobilenetv2": mobilenet_v2}


def out_size(c):
    return (c.h + 2 * c.pad - c.k) // c.stride + 1


def macs(c, batch):
    o = out_size(c)
    return batch * o * o * c.oc * c.k * c.k * c.ic


def chain(op, x, r):
    # x is an argument (a constant input would be constant-folded by Grappler); each call
    # waits for the previous one, and the last one's output is returned.
    # Every output feeds the result (nothing is pruned); Grappler is off (see main) so
    # identical calls are not merged.
    @tf.function
    def f(x):
        y = op(x)
        outs = [tf.cast(tf.reshape(y, [-1])[:1], tf.float32)]
        for _ in range(r - 1):
            with tf.control_dependencies([y]):
                y = op(x)
            outs.append(tf.cast(tf.reshape(y, [-1])[:1], tf.float32))
        return tf.add_n(outs)
    return lambda: f(x)


def time_ops(entries, repeats, target_s=0.15):
    """entries: [(path or None, op, x)]. Times all of them interleaved, repeat by repeat (each
    repeat times every entry back to back, so all see the same machine load), and returns the
    median per-call seconds of each. Per call = (chain of r+1 − fastest 1-call run) / r."""
    chains = []
    for path, op, x in entries:
        set_path(path)
        one = chain(op, x, 1)
        one()
        t0 = time.perf_counter()
        one()
        est = max(time.perf_counter() - t0, 1e-5)
        r = int(min(50, max(3, target_s / est)))
        many = chain(op, x, r + 1)
        many()
        chains.append((path, one, many, r))
    ones = [[] for _ in entries]
    manys = [[] for _ in entries]
    for _ in range(repeats):
        for i, (path, one, many, r) in enumerate(chains):
            set_path(path)
            t0 = time.perf_counter()
            one()
            t1 = time.perf_counter()
            many()
            t2 = time.perf_counter()
            ones[i].append(t1 - t0)
            manys[i].append(t2 - t1)
    return [max((statistics.median(manys[i]) - min(ones[i])) / r, 1e-7)
            for i, (_, _, _, r) in enumerate(chains)]


def int8_op(c, rng):
    w = rng.integers(-127, 128, (c.k, c.k, c.ic, c.oc), dtype=np.int8)
    w = tf.constant(w)
    bias = tf.constant(rng.uniform(-1, 1, c.oc).astype(np.float32))
    fs = tf.constant(rng.uniform(0.001, 0.01, c.oc).astype(np.float32))
    kw = dict(input_scale=0.02, input_zero_point=0, strides=[c.stride] * 2,
              explicit_paddings=[c.pad] * 4, activation="RELU", output_scale=0.05)
    return lambda x: tfq8.ops.tfq8_conv2d(x, w, bias, fs, [], **kw)


def fp32_op(c, rng):
    w = tf.constant(rng.normal(size=(c.k, c.k, c.ic, c.oc)).astype(np.float32))
    pad = [[0, 0], [c.pad, c.pad], [c.pad, c.pad], [0, 0]]
    return lambda x: tf.nn.conv2d(x, w, strides=c.stride, padding=pad)


PATH_ENV = {"avx2-c4": {"TFQ8_ISA": "avx2", "TFQ8_AVX2_KERNEL": "c4"},
            # 3×3 stride-1 convs on the direct s16 kernel instead of exact Winograd F(2×2, 3×3)
            "avx2-direct": {"TFQ8_ISA": "avx2", "TFQ8_WINOGRAD": "0"},
            # the s16 kernel with 1×1 inputs widened whole up front (before per-task widening)
            "avx2-v1": {"TFQ8_ISA": "avx2", "TFQ8_AVX2_S16_DRIVER": "v1"}}


def set_path(isa):
    """Sets the environment of path `isa` (None: the library's default choice)."""
    for k in ("TFQ8_ISA", "TFQ8_AVX2_KERNEL", "TFQ8_AVX2_S16_DRIVER", "TFQ8_WINOGRAD"):
        os.environ.pop(k, None)
    if isa:
        os.environ.update(PATH_ENV.get(isa, {"TFQ8_ISA": isa}))


def cpu_line():
    model, flags = "?", set()
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    isa = [f for f in ("avx2", "fma", "avx_vnni", "avx512f", "avx512_vnni", "amx_int8")
           if f in flags]
    return f"{model}, {os.cpu_count()} logical CPUs, flags: {' '.join(isa) or 'none of avx2..amx'}"


def kernel_name(c, rng):
    """The implementation the library picks for conv `c` (its TFQ8_VERBOSE line), via stderr."""
    import tempfile
    op = int8_op(c, rng)
    x = tf.zeros([1, c.h, c.w, c.ic], tf.uint8)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as f:
        os.dup2(f.fileno(), 2)
        os.environ["TFQ8_VERBOSE"] = "1"
        try:
            op(x)
        except tf.errors.InvalidArgumentError as e:
            return f"unavailable ({e.message})"
        finally:
            os.environ.pop("TFQ8_VERBOSE", None)
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        lines = [ln.split("]: ", 1)[1].strip() for ln in f if ln.startswith("tfq8:") and "]: " in ln]
    return lines[-1] if lines else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--isa", action="append", help="ref|avx2|avx512vnni|amx (repeatable)")
    ap.add_argument("--batch", type=int, action="append")
    ap.add_argument("--net", action="append", choices=sorted(NETS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-fp32", action="store_true")
    args = ap.parse_args()
    isas = args.isa or [os.environ.get("TFQ8_ISA") or None]
    batches = args.batch or [1, 16]
    nets = args.net or ["resnet50", "mobilenetv2"]
    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_line()}; TF {tf.__version__}, intra-op threads 2; median of "
          f"{args.repeats} repeats")
    totals = []
    for net in nets:
        shapes = collections.Counter()
        first = {}
        for c in NETS[net]():
            key = c._replace(name="")
            shapes[key] += 1
            first.setdefault(key, c.name)
        for batch in batches:
            names = [isa or "default" for isa in isas]
            print(f"\n## {net}, batch {batch}\n")
            for isa, name in zip(isas, names):
                set_path(isa)
                print(f"* path {name}: {kernel_name(next(iter(shapes)), rng)}")
            print()
            head = " | ".join(f"{n} ms | {n} GOP/s (% peak) | fp32/{n}" for n in names)
            print(f"| layer (×count) | shape | fp32 ms | {head} |")
            print("| --- | --- | ---: |" + " ---: | ---: | ---: |" * len(names))
            peaks = [PEAK_GOPS.get((isa or _default_isa()).split("-")[0], 0.0) for isa in isas]
            t8_sum = [0.0] * len(isas)
            t32_sum = gop_sum = 0.0
            for key, count in shapes.items():
                x8 = tf.constant(rng.integers(0, 256, (batch, key.h, key.w, key.ic),
                                              dtype=np.uint8))
                entries = [(isa, int8_op(key, rng), x8) for isa in isas]
                if not args.no_fp32:
                    xf = tf.constant(rng.normal(size=(batch, key.h, key.w, key.ic))
                                     .astype(np.float32))
                    entries.append((None, fp32_op(key, rng), xf))
                times = time_ops(entries, args.repeats)
                t32 = times[-1] if not args.no_fp32 else float("nan")
                gop = 2 * macs(key, batch) / 1e9
                o = out_size(key)
                cells = []
                for i, t8 in enumerate(times[:len(isas)]):
                    gops = gop / t8
                    pk = f" ({100 * gops / peaks[i]:.0f}%)" if peaks[i] else ""
                    cells.append(f"{t8 * 1e3:.3f} | {gops:.0f}{pk} | {t32 / t8:.2f}")
                    t8_sum[i] += count * t8
                print(f"| {first[key]} (×{count}) | {key.k}x{key.k}/{key.stride} "
                      f"{key.h}x{key.w}x{key.ic}→{o}x{o}x{key.oc} | {t32 * 1e3:.3f} | "
                      + " | ".join(cells) + " |", flush=True)
                t32_sum += count * t32
                gop_sum += count * gop
            cells = [f"**{t * 1e3:.2f}** | {gop_sum / t:.0f} | **{t32_sum / t:.2f}**"
                     for t in t8_sum]
            print(f"| **total** | {gop_sum:.2f} GOP | {t32_sum * 1e3:.2f} | " + " | ".join(cells)
                  + " |")
            for name, t in zip(names, t8_sum):
                totals.append((net, batch, name, t * 1e3, t32_sum * 1e3))
    print("\n## Totals (all timed convs)\n")
    print("| net | batch | path | int8 ms | fp32 ms | fp32/int8 |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for net, batch, name, t8, t32 in totals:
        print(f"| {net} | {batch} | {name} | {t8:.2f} | {t32:.2f} | {t32 / t8:.2f} |")


def _default_isa():
    from tfq8 import ops  # noqa: F401
    feats = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if "amx_int8" in feats:
        return "amx"
    if "avx512_vnni" in feats:
        return "avx512vnni"
    return "avx2"


if __name__ == "__main__":
    main()
