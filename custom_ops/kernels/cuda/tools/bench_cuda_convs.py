"""Times every ResNet-50 convolution (Keras ResNet50 v1 at 224x224: 53 convs, 20 distinct shapes)
with the tfq8 INT8 CUDA kernel against PyTorch cuDNN FP16 and FP32 (TF32 off), channels_last,
at batch 1 / 16 / 64 / 256, in one run on one GPU.

    python custom_ops/kernels/cuda/tools/bench_cuda_convs.py [--batches 1,16,64,256] [--algo auto]

INT8 times are the convolution kernel alone (tfq8_cuda_conv2d_run: the weight packing of
tfq8_cuda_conv2d_prepare is timed separately and reported once per shape), u8 output with ReLU
(the common fused case). Each time is the mean over --iters calls after --warmup calls, measured
with CUDA events. "% peak" = achieved INT8 ops (2*MACs) / the dense INT8 tensor-core peak:
SMs x clock x INT8 ops per SM per clock (sm_80: 2048 MACs = 4096 ops; sm_90: 4096 MACs = 8192
ops, a peak only wgmma reaches, mma.sync gets about half of it) unless --peak-tops is given.
Needs numpy and a CUDA GPU; PyTorch for the cuDNN columns (skipped without it).
"""
import argparse
import ctypes
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cuda_lib  # noqa: E402
from cuda_lib import ACT, ALGO, MMA_TILES, OUT, ConvShape, Epilogue  # noqa: E402

# (name, H_in, W_in, IC, OC, k, stride, pad, count) — Keras ResNet50: the stride sits on the first
# 1x1 conv of a stage's first block and on its shortcut; conv1 is 7x7/2 after a 3-pixel pad.
RESNET50 = [
    ("conv1", 224, 224, 3, 64, 7, 2, 3, 1),
    ("s2_1x1_in_first", 56, 56, 64, 64, 1, 1, 0, 1),
    ("s2_1x1_in", 56, 56, 256, 64, 1, 1, 0, 2),
    ("s2_3x3", 56, 56, 64, 64, 3, 1, 1, 3),
    ("s2_1x1_out", 56, 56, 64, 256, 1, 1, 0, 3),
    ("s2_shortcut", 56, 56, 64, 256, 1, 1, 0, 1),
    ("s3_1x1_in_s2", 56, 56, 256, 128, 1, 2, 0, 1),
    ("s3_1x1_in", 28, 28, 512, 128, 1, 1, 0, 3),
    ("s3_3x3", 28, 28, 128, 128, 3, 1, 1, 4),
    ("s3_1x1_out", 28, 28, 128, 512, 1, 1, 0, 4),
    ("s3_shortcut_s2", 56, 56, 256, 512, 1, 2, 0, 1),
    ("s4_1x1_in_s2", 28, 28, 512, 256, 1, 2, 0, 1),
    ("s4_1x1_in", 14, 14, 1024, 256, 1, 1, 0, 5),
    ("s4_3x3", 14, 14, 256, 256, 3, 1, 1, 6),
    ("s4_1x1_out", 14, 14, 256, 1024, 1, 1, 0, 6),
    ("s4_shortcut_s2", 28, 28, 512, 1024, 1, 2, 0, 1),
    ("s5_1x1_in_s2", 14, 14, 1024, 512, 1, 2, 0, 1),
    ("s5_1x1_in", 7, 7, 2048, 512, 1, 1, 0, 2),
    ("s5_3x3", 7, 7, 512, 512, 3, 1, 1, 3),
    ("s5_1x1_out", 7, 7, 512, 2048, 1, 1, 0, 3),
    ("s5_shortcut_s2", 14, 14, 1024, 2048, 1, 2, 0, 1),
]
assert sum(r[-1] for r in RESNET50) == 53


def peak_tops(dev, override):
    if override:
        return override
    per_sm_clk = {8: 4096, 9: 8192}.get(dev["cc"][0], 4096)
    if dev["cc"] in ((8, 6), (8, 7), (8, 9)):
        per_sm_clk = 2048  # consumer Ampere / Ada: half the A100 rate per SM
    if dev["clock_khz"] <= 0:
        sys.exit("the runtime reports no clock rate: pass --peak-tops")
    return dev["sms"] * dev["clock_khz"] * 1e3 * per_sm_clk / 1e12


def time_torch(torch, x, w, dtype, warmup, iters):
    import torch.nn.functional as F
    stride, pad = x[1], x[2]
    inp = x[0]
    for _ in range(warmup):
        F.conv2d(inp, w, stride=stride, padding=pad)
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        F.conv2d(inp, w, stride=stride, padding=pad)
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", default=cuda_lib.DEFAULT_LIB)
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--algo", default="auto", choices=sorted(ALGO))
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--peak-tops", type=float, default=0.0,
                    help="INT8 dense peak in TOP/s (default: from SMs x clock x rate per SM)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--layers", default="",
                    help="comma-separated layer names (default: all 21 shapes)")
    ap.add_argument("--sweep", action="store_true",
                    help="also time every mma tile per layer (columns: ms per tile; '-' = refused)")
    args = ap.parse_args()
    layers = [r for r in RESNET50 if not args.layers or r[0] in args.layers.split(",")]

    lib = cuda_lib.Lib(args.lib)
    dev = lib.device()
    peak = peak_tops(dev, args.peak_tops)
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        except ImportError:
            print("PyTorch not found: cuDNN columns skipped")
    print(f"device: {dev['name']} sm_{dev['cc'][0]}{dev['cc'][1]}, {dev['sms']} SMs, "
          f"{dev['clock_khz'] / 1e3:.0f} MHz; INT8 dense peak used: {peak:.0f} TOP/s")
    print(f"algo: {args.algo}; {args.warmup} warm-up + {args.iters} timed calls per entry; "
          "times in ms per call")
    rng = np.random.default_rng(0)
    for batch in (int(b) for b in args.batches.split(",")):
        print(f"\n== batch {batch} ==")
        print(f"{'layer':<16}{'x':>3} {'kernel':<24}{'int8':>9}{'prep':>8}{'%peak':>7}"
              f"{'fp16':>9}{'fp32':>9}{'vs16':>6}{'vs32':>6}")
        tot = {"int8": 0.0, "fp16": 0.0, "fp32": 0.0, "ops": 0.0}
        if args.sweep:
            print("sweep: " + " ".join(f"{t[3:]:>9}" for t in MMA_TILES))
        tot_best = 0.0
        for name, h, w_, ic, oc, k, st, pad, count in layers:
            s = ConvShape(n=batch, h=h, w=w_, c=ic, kh=k, kw=k, oc=oc, stride_h=st, stride_w=st,
                          dilation_h=1, dilation_w=1, pad_t=pad, pad_b=pad, pad_l=pad, pad_r=pad)
            assert lib.L.tfq8_conv_shape_finish(ctypes.byref(s)) == 0
            e = Epilogue(input_scale=0.02, input_zero_point=0, bias_is_int32=0, per_channel=1,
                         activation=ACT["RELU"], out_type=OUT["uint8"], output_scale=0.05,
                         summand_scale=1.0, clip_max=6.0)
            x = rng.integers(0, 256, size=(batch, h, w_, ic), dtype=np.uint8)
            wt = rng.integers(-127, 128, size=(k, k, ic, oc), dtype=np.int64).astype(np.int8)
            dx, dw = lib.to_dev(x), lib.to_dev(wt)
            db = lib.to_dev(np.zeros(oc, np.float32))
            dfs = lib.to_dev(np.full(oc, 0.01, np.float32))
            dy = lib.empty((batch, s.oh, s.ow, oc), np.uint8)
            ws = lib.alloc(lib.L.tfq8_cuda_conv2d_workspace_size(ctypes.byref(s)))
            algo = ALGO[args.algo]
            chosen = algo if algo != 0 else lib.L.tfq8_cuda_conv2d_select(ctypes.byref(s))
            kname = lib.L.tfq8_cuda_conv_algo_name(chosen).decode().replace("qu8_conv_", "")
            t_prep = lib.L.tfq8t_time_conv(ctypes.byref(s), ctypes.byref(e), dx, dw, db, dfs,
                                           None, dy, ws, algo, 1, 2, 5)
            t8 = lib.L.tfq8t_time_conv(ctypes.byref(s), ctypes.byref(e), dx, dw, db, dfs, None,
                                       dy, ws, algo, 0, args.warmup, args.iters)
            if t8 < 0 or t_prep < 0:
                lib.check(int(-min(t8, t_prep)), f"{name} batch {batch}")
            ops = 2.0 * batch * s.oh * s.ow * oc * ic * k * k
            row = f"{name:<16}{count:>3} {kname:<24}{t8:>9.4f}{t_prep:>8.4f}" \
                  f"{100 * ops / (t8 * 1e-3) / (peak * 1e12):>6.1f}%"
            tot["int8"] += count * t8
            tot["ops"] += count * ops
            if torch is not None:
                times = {}
                for dt, key in ((torch.float16, "fp16"), (torch.float32, "fp32")):
                    xt = torch.randn(batch, ic, h, w_, device="cuda", dtype=dt).to(
                        memory_format=torch.channels_last)
                    wtt = torch.randn(oc, ic, k, k, device="cuda", dtype=dt).to(
                        memory_format=torch.channels_last)
                    times[key] = time_torch(torch, (xt, st, pad), wtt, dt, args.warmup,
                                            args.iters)
                    tot[key] += count * times[key]
                    del xt, wtt
                row += f"{times['fp16']:>9.4f}{times['fp32']:>9.4f}" \
                       f"{times['fp16'] / t8:>6.2f}{times['fp32'] / t8:>6.2f}"
            print(row)
            if args.sweep:
                ts = []
                for tname in MMA_TILES:
                    tt = lib.L.tfq8t_time_conv(ctypes.byref(s), ctypes.byref(e), dx, dw, db, dfs,
                                               None, dy, ws, ALGO[tname], 0, args.warmup,
                                               args.iters)
                    ts.append(tt if tt >= 0 else float("nan"))
                best = min([t8] + [v for v in ts if v == v])
                tot_best += count * best
                print("  sweep " + " ".join("        -" if v != v else f"{v:>9.4f}" for v in ts)
                      + f"  best {best:.4f}")
            lib.free_all()
        line = f"{'TOTAL (x count)':<20} {'':<24}{tot['int8']:>9.3f}{'':>8}" \
               f"{100 * tot['ops'] / (tot['int8'] * 1e-3) / (peak * 1e12):>6.1f}%"
        if torch is not None:
            line += f"{tot['fp16']:>9.3f}{tot['fp32']:>9.3f}{tot['fp16'] / tot['int8']:>6.2f}" \
                    f"{tot['fp32'] / tot['int8']:>6.2f}"
        print(line)
        if args.sweep:
            print(f"sum of per-layer best tiles: {tot_best:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
