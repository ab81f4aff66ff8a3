"""Bit-exact check of every tfq8 CUDA kernel against the numpy reference of
docs/int8_numerics.md (tests/ops/numpy_ref.py), over a shape sweep. Needs a CUDA GPU, numpy and
nvcc (or a prebuilt libtfq8_cuda_test.so); no TensorFlow, no PyTorch.

    python custom_ops/kernels/cuda/tools/test_cuda_kernels.py [--lib PATH] [--cases N] [-v]

Exact equality is required everywhere (f32 outputs compared bit for bit): the contract says every
implementation gives identical bytes. A failure prints the kernel, the shape, the first differing
elements with both values and the accumulator where there is one. Exit status 0 = all passed.
"""
import argparse
import ctypes
import importlib.util
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, HERE)
import cuda_lib  # noqa: E402
from cuda_lib import ACT, ALGO, MMA_TILES, OUT, ConvShape, Epilogue, PoolShape  # noqa: E402

_spec = importlib.util.spec_from_file_location("numpy_ref",
                                               os.path.join(ROOT, "tests", "ops", "numpy_ref.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

F32 = np.float32


class Checker:
    def __init__(self, lib, verbose):
        self.lib, self.verbose = lib, verbose
        self.passed = self.failed = 0

    def same(self, name, got, want, info="", acc=None):
        if got.dtype == np.float32:
            eq = got.view(np.uint32) == want.astype(F32).view(np.uint32)
        else:
            eq = got == want.astype(got.dtype)
        if got.shape == want.shape and eq.all():
            self.passed += 1
            if self.verbose:
                print(f"ok   {name} {info}")
            return True
        self.failed += 1
        print(f"FAIL {name} {info}")
        if got.shape != want.shape:
            print(f"     shape {got.shape} != {want.shape}")
            return False
        bad = np.argwhere(~eq)
        print(f"     {len(bad)} of {eq.size} elements differ; first ones:")
        for idx in bad[:5]:
            idx = tuple(idx)
            extra = f" acc={acc[idx]}" if acc is not None else ""
            print(f"     at {idx}: got {got[idx]!r} want {want[idx]!r}{extra}")
        return False


def rng_u8(rng, shape, zp=None):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


# ---- elementwise ----------------------------------------------------------------------------

def test_elementwise(ck, rng):
    L = ck.lib
    for n in (1, 7, 1000, 65536 + 3):
        for scale, zp in ((0.1, 128), (0.0173, 0), (1e-3, 37), (3.0, 255)):
            x = (rng.standard_normal(n) * 200 * scale).astype(F32)
            if n >= 7:   # ties (x = (k + 0.5) * scale exactly), NaN, infinities
                x[0], x[1], x[2] = np.nan, np.inf, -np.inf
                inv = F32(np.float64(1.0) / np.float64(scale))
                k = np.arange(3, n, 5)
                x[k] = ((k % 300 - 150).astype(F32) + F32(0.5)) / inv
            dx, dy = L.to_dev(x), L.empty(n, np.uint8)
            L.check(L.L.tfq8_cuda_quantize(n, dx, dy, scale, zp, None), "quantize")
            ck.same("quantize", L.to_host(dy, n, np.uint8), ref.quantize(x, scale, zp),
                    f"n={n} scale={scale} zp={zp}")
            q = rng_u8(rng, n)
            dq, df = L.to_dev(q), L.empty(n, F32)
            L.check(L.L.tfq8_cuda_dequantize_u8(n, dq, df, scale, zp, None), "dequantize")
            ck.same("dequantize_u8", L.to_host(df, n, F32), ref.dequantize(q, scale, zp),
                    f"n={n} scale={scale} zp={zp}")
            s32 = rng.integers(-2**31, 2**31 - 1, size=n, dtype=np.int64).astype(np.int32)
            d32, df2 = L.to_dev(s32), L.empty(n, F32)
            L.check(L.L.tfq8_cuda_dequantize_s32(n, d32, df2, scale, None), "dequantize_s32")
            want = (s32.astype(F32) * F32(scale)).astype(F32)
            ck.same("dequantize_s32", L.to_host(df2, n, F32), want, f"n={n} scale={scale}")
            for out_scale, out_zp in ((scale * 0.37, 128), (scale * 2.5, 0), (scale, zp)):
                dr = L.empty(n, np.uint8)
                L.check(L.L.tfq8_cuda_requantize(n, dq, dr, scale, zp, out_scale, out_zp, None),
                        "requantize")
                ck.same("requantize", L.to_host(dr, n, np.uint8),
                        ref.requantize(q, scale, zp, out_scale, out_zp),
                        f"n={n} {scale}/{zp} -> {out_scale}/{out_zp}")
            table = rng_u8(rng, 256)
            dt, dl = L.to_dev(table), L.empty(n, np.uint8)
            L.check(L.L.tfq8_cuda_lookup(n, dq, dt, dl, None), "lookup")
            ck.same("lookup", L.to_host(dl, n, np.uint8), ref.lookup(q, table), f"n={n}")
            L.free_all()


def test_channel_mul(ck, rng):
    L = ck.lib
    for shape in ((1, 1), (2, 5, 7, 8), (3, 4, 4, 17), (2, 9, 9, 96), (4, 150, 130)):
        q = rng_u8(rng, shape)
        n, c = q.size, shape[-1]
        gshape = (shape[0],) + (1,) * (len(shape) - 2) + (c,)
        for per_sample in (True, False):
            gate = rng.uniform(-1.5, 1.5, gshape if per_sample else (1,) + gshape[1:])
            gate = gate.astype(np.float32)
            gate.flat[:3] = [np.nan, np.inf, 0.0] if gate.size >= 3 else gate.flat[:3]
            for si, zi, so, zo in ((0.02, 0, 0.015, 0), (0.1, 37, 0.007, 201)):
                dq, dg, dy = L.to_dev(q), L.to_dev(gate), L.empty(n, np.uint8)
                L.check(L.L.tfq8_cuda_channel_mul(n, c, n // c // shape[0], int(per_sample), dq,
                                                  dg, si, zi, so, zo, dy, None), "channel_mul")
                ck.same("channel_mul", L.to_host(dy, n, np.uint8).reshape(shape),
                        ref.channel_mul(q, gate, si, zi, so, zo),
                        f"{shape} per_sample={per_sample} {si}/{zi} -> {so}/{zo}")
        L.free_all()


def test_add(ck, rng):
    L = ck.lib
    for n in (1, 33, 100000):
        for act in ("NONE", "RELU", "RELU6"):
            a, b = rng_u8(rng, n), rng_u8(rng, n)
            sa, za, sb, zb = 0.05, 128, 0.031, 0
            for so, zo in ((0.06, 128), (0.02, 0), (0.2, 3)):
                da, db, dy = L.to_dev(a), L.to_dev(b), L.empty(n, np.uint8)
                L.check(L.L.tfq8_cuda_add(n, da, sa, za, db, sb, zb, dy, so, zo, ACT[act], None),
                        "add")
                ck.same("add", L.to_host(dy, n, np.uint8),
                        ref.add(a, b, sa, za, sb, zb, so, zo, act), f"n={n} act={act} out={so}/{zo}")
        L.free_all()


def test_concat(ck, rng):
    L = ck.lib
    for shape, axis in (((2, 5, 7, 3), 3), ((2, 5, 7, 3), 1), ((4, 9), 0), ((1, 3, 3, 64), -1)):
        k = 3
        vals, scales, zps = [], [], []
        for i in range(k):
            s = list(shape)
            s[axis] = [2, 1, 5][i] if shape[axis] > 1 else 1
            vals.append(rng_u8(rng, tuple(s)))
            scales.append([0.1, 0.05, 0.1][i])
            zps.append([128, 0, 128][i])
        out_scale, out_zp = 0.1, 128   # input 0 and 2 are plain copies
        want = ref.concat(vals, axis, scales, zps, out_scale, out_zp)
        ax = axis % len(shape)
        outer = int(np.prod(shape[:ax]))
        inner = int(np.prod(shape[ax + 1:]))
        ptrs = (ctypes.c_void_p * k)(*[L.to_dev(v) for v in vals])
        lens = (ctypes.c_int64 * k)(*[v.shape[ax] for v in vals])
        dy = L.empty(want.shape, np.uint8)
        L.check(L.L.tfq8_cuda_concat(k, ptrs, lens, (ctypes.c_float * k)(*scales),
                                     (ctypes.c_int * k)(*zps), outer, inner, dy, out_scale,
                                     out_zp, None), "concat")
        ck.same("concat", L.to_host(dy, want.shape, np.uint8), want, f"shape={shape} axis={axis}")
        L.free_all()


def test_pools(ck, rng):
    L = ck.lib
    cases = [((1, 7, 7, 3), (3, 3), (2, 2)), ((2, 112, 112, 64), (3, 3), (2, 2)),
             ((2, 8, 9, 5), (2, 2), (2, 2)), ((1, 5, 5, 17), (5, 5), (1, 1)),
             ((3, 6, 4, 2), (1, 3), (1, 2)), ((1, 4, 4, 8), (3, 3), (3, 3))]
    for shape, k, st in cases:
        x = rng_u8(rng, shape)
        dx = L.to_dev(x)
        for padding in ("VALID", "SAME"):
            s = PoolShape(n=shape[0], h=shape[1], w=shape[2], c=shape[3], kh=k[0], kw=k[1],
                          stride_h=st[0], stride_w=st[1])
            L.L.tfq8_pool_shape_finish(ctypes.byref(s), int(padding == "SAME"))
            for name, fn, rfn in (("max_pool", L.L.tfq8_cuda_max_pool, ref.max_pool),
                                  ("avg_pool", L.L.tfq8_cuda_avg_pool, ref.avg_pool)):
                want = rfn(x, k, st, padding)
                dy = L.empty(want.shape, np.uint8)
                L.check(fn(ctypes.byref(s), dx, dy, None), name)
                ck.same(name, L.to_host(dy, want.shape, np.uint8), want,
                        f"shape={shape} k={k} s={st} {padding}")
        want = ref.mean(x)
        dy = L.empty(want.shape, np.uint8)
        L.check(L.L.tfq8_cuda_mean(*shape, dx, dy, None), "mean")
        ck.same("mean", L.to_host(dy, want.shape, np.uint8), want, f"shape={shape}")
        L.free_all()


# ---- conv / depthwise / matmul --------------------------------------------------------------

def random_conv_case(rng, depthwise=False, matmul=False):
    """A random shape + epilogue; outputs land mostly inside the u8 range with some saturation."""
    if matmul:
        n, h, w, kh, kw = int(rng.integers(1, 70)), 1, 1, 1, 1
        c = int(rng.choice([1, 3, 16, 64, 100, 256, 1000]))
        oc = int(rng.choice([1, 10, 64, 129, 256]))
        st, dil, pads = (1, 1), (1, 1), (0, 0, 0, 0)
    else:
        n = int(rng.choice([1, 2, 3]))
        h, w = int(rng.integers(1, 20)), int(rng.integers(1, 20))
        kh, kw = (int(v) for v in rng.choice([1, 2, 3, 5, 7], size=2))
        c = int(rng.choice([1, 3, 4, 8, 16, 24, 32, 48, 64, 80, 128] if not depthwise
                           else [1, 3, 8, 32, 96]))
        oc = (c * int(rng.choice([1, 2, 3]))) if depthwise else int(
            rng.choice([1, 5, 8, 16, 63, 64, 72, 128, 130, 256]))
        st = tuple(int(v) for v in rng.choice([1, 2, 3], size=2))
        dil = tuple(int(v) for v in rng.choice([1, 1, 2], size=2))
        pads = tuple(int(v) for v in rng.integers(0, 4, size=4))
        # make the window fit
        h = max(h, (kh - 1) * dil[0] + 1 - pads[0] - pads[1])
        w = max(w, (kw - 1) * dil[1] + 1 - pads[2] - pads[3])
    return dict(n=n, h=h, w=w, c=c, kh=kh, kw=kw, oc=oc, strides=st, dilations=dil, pads=pads)


def random_epilogue(rng, oc):
    out_type = str(rng.choice(["uint8", "uint8", "float32", "int32"]))
    e = dict(input_scale=float(rng.choice([0.02, 0.0117, 0.5])),
             input_zero_point=int(rng.choice([0, 128, 37])),
             activation="NONE" if out_type == "int32" else str(
                 rng.choice(["NONE", "RELU", "RELU6", "CLIP"])),
             clip_min=float(rng.choice([-1.0, 0.0, 0.5])), clip_max=float(rng.choice([2.0, 6.0])),
             out_type=out_type, output_zero_point=int(rng.choice([0, 128])) if out_type == "uint8"
             else 0)
    per_channel = bool(rng.integers(0, 2))
    e["filter_scale"] = (rng.uniform(0.001, 0.02, size=oc if per_channel else 1)).astype(F32)
    kind = str(rng.choice(["f32", "s32", "none"]))
    if kind == "f32":
        e["bias"] = rng.normal(0, 2.0, size=oc).astype(F32)
    elif kind == "s32":
        e["bias"] = rng.integers(-20000, 20000, size=oc).astype(np.int32)
    else:
        e["bias"] = None
    e["with_summand"] = out_type != "int32" and bool(rng.integers(0, 2))
    return e


def run_conv(ck, rng, case, epi, algo, kind):
    L = ck.lib
    c, oc = case["c"], case["oc"]
    x = rng_u8(rng, (case["n"], case["h"], case["w"], c))
    if kind == "depthwise":
        wshape = (case["kh"], case["kw"], c, oc // c)
    else:
        wshape = (case["kh"], case["kw"], c, oc)
    w = rng.integers(-127, 128, size=wshape, dtype=np.int64).astype(np.int8)
    if kind == "depthwise":
        acc = ref.depthwise_acc(x, w, epi["input_zero_point"], case["strides"], case["dilations"],
                                case["pads"])
    else:
        acc = ref.conv2d_acc(x, w, epi["input_zero_point"], case["strides"], case["dilations"],
                             case["pads"])
    oshape = acc.shape
    # output scale: spread the results over the u8 range, with some saturation
    spread = max(float(np.abs(acc).max()), 1.0) * epi["input_scale"] * float(
        np.mean(epi["filter_scale"]))
    out_scale = spread / float(rng.choice([60.0, 127.0, 300.0]))
    summand = rng_u8(rng, oshape) if epi["with_summand"] else None
    bias_for_ref = epi["bias"] if epi["bias"] is not None else np.zeros(oc, F32)
    ref_kw = dict(input_scale=epi["input_scale"], filter_scale=epi["filter_scale"],
                  bias=bias_for_ref, input_zero_point=epi["input_zero_point"],
                  activation=epi["activation"], clip_min=epi["clip_min"],
                  clip_max=epi["clip_max"], out_type=epi["out_type"], output_scale=out_scale,
                  output_zero_point=epi["output_zero_point"])
    if summand is not None:
        ref_kw.update(summand=summand, summand_scale=out_scale * 0.8, summand_zero_point=128)
    want = ref.epilogue(acc, **ref_kw)

    s = ConvShape(n=case["n"], h=case["h"], w=case["w"], c=c, kh=case["kh"], kw=case["kw"], oc=oc,
                  stride_h=case["strides"][0], stride_w=case["strides"][1],
                  dilation_h=case["dilations"][0], dilation_w=case["dilations"][1],
                  pad_t=case["pads"][0], pad_b=case["pads"][1], pad_l=case["pads"][2],
                  pad_r=case["pads"][3], depthwise=int(kind == "depthwise"))
    assert L.L.tfq8_conv_shape_finish(ctypes.byref(s)) == 0
    assert (s.oh, s.ow) == oshape[1:3], ((s.oh, s.ow), oshape)
    if kind == "matmul":   # the C API's matmul view of the same problem
        L.L.tfq8_matmul_shape(case["n"], c, oc, ctypes.byref(s))
    e = Epilogue(input_scale=epi["input_scale"], input_zero_point=epi["input_zero_point"],
                 bias_is_int32=int(epi["bias"] is not None and epi["bias"].dtype == np.int32),
                 per_channel=int(len(epi["filter_scale"]) == oc),
                 has_summand=int(summand is not None),
                 summand_scale=ref_kw.get("summand_scale", 1.0),
                 summand_zero_point=ref_kw.get("summand_zero_point", 0),
                 activation=ACT[epi["activation"]], clip_min=epi["clip_min"],
                 clip_max=epi["clip_max"], out_type=OUT[epi["out_type"]], output_scale=out_scale,
                 output_zero_point=epi["output_zero_point"])
    out_dtype = {"uint8": np.uint8, "float32": F32, "int32": np.int32}[epi["out_type"]]
    ws = L.alloc(L.L.tfq8_cuda_conv2d_workspace_size(ctypes.byref(s)))
    dy = L.empty(oshape, out_dtype)
    err = L.L.tfq8_cuda_conv2d(ctypes.byref(s), ctypes.byref(e), L.to_dev(x), L.to_dev(w),
                               L.to_dev(epi["bias"]) if epi["bias"] is not None else None,
                               L.to_dev(epi["filter_scale"]),
                               L.to_dev(summand) if summand is not None else None, dy, ws,
                               ALGO[algo], None)
    info = (f"algo={algo} {kind} N={case['n']} H={case['h']} W={case['w']} C={c} OC={oc} "
            f"k={case['kh']}x{case['kw']} s={case['strides']} d={case['dilations']} "
            f"p={case['pads']} zp_in={epi['input_zero_point']} act={epi['activation']} "
            f"out={epi['out_type']} bias={None if epi['bias'] is None else epi['bias'].dtype} "
            f"per_channel={e.per_channel} summand={summand is not None}")
    if err == 801:  # cudaErrorNotSupported: the algorithm refuses this shape (by design)
        return None
    L.check(err, info)
    got = L.to_host(dy, oshape, out_dtype)
    ok = ck.same(f"conv[{algo}]", got.reshape(want.shape), want, info, acc=acc)
    L.free_all()
    return ok


def test_convs(ck, rng, cases):
    for kind in ("conv", "depthwise", "matmul"):
        algos = ["ref", "auto"] if kind == "depthwise" else \
            ["ref", "dp4a"] + MMA_TILES + ["auto"]
        for i in range(cases if kind == "conv" else max(cases // 3, 10)):
            case = random_conv_case(rng, depthwise=kind == "depthwise", matmul=kind == "matmul")
            epi = random_epilogue(rng, case["oc"])
            seed = int(rng.integers(0, 2**31))
            for algo in algos:
                run_conv(ck, np.random.default_rng(seed), case, epi, algo, kind)
    # Fixed ResNet-ish shapes: multi-stage K loops, border pixels, partial tiles.
    fixed = [dict(n=2, h=14, w=14, c=256, kh=3, kw=3, oc=256, strides=(1, 1), dilations=(1, 1),
                  pads=(1, 1, 1, 1)),
             dict(n=1, h=28, w=28, c=64, kh=1, kw=1, oc=200, strides=(2, 2), dilations=(1, 1),
                  pads=(0, 0, 0, 0)),
             dict(n=1, h=30, w=30, c=3, kh=7, kw=7, oc=64, strides=(2, 2), dilations=(1, 1),
                  pads=(3, 3, 3, 3)),
             dict(n=1, h=7, w=7, c=512, kh=3, kw=3, oc=130, strides=(1, 1), dilations=(1, 1),
                  pads=(1, 1, 1, 1)),
             # several blocks of every tile, K stages spanning taps (c = 96), deep pipelines
             dict(n=3, h=20, w=21, c=96, kh=3, kw=3, oc=320, strides=(1, 1), dilations=(1, 1),
                  pads=(1, 1, 1, 1)),
             dict(n=4, h=28, w=28, c=64, kh=1, kw=1, oc=256, strides=(1, 1), dilations=(1, 1),
                  pads=(0, 0, 0, 0)),
             dict(n=2, h=15, w=15, c=512, kh=1, kw=1, oc=144, strides=(2, 2), dilations=(1, 1),
                  pads=(0, 0, 0, 0)),
             # resident-K 1x1 kernel: several M tiles per persistent block (16 N tiles), Kp 64
             # with a separate staging tile; strided + padded rows (zp_in) with a K tail (c = 96);
             # Kp 256 / 192 with a partial N tile
             dict(n=1, h=48, w=48, c=16, kh=1, kw=1, oc=2048, strides=(1, 1), dilations=(1, 1),
                  pads=(0, 0, 0, 0)),
             dict(n=2, h=17, w=19, c=96, kh=1, kw=1, oc=64, strides=(2, 1), dilations=(1, 1),
                  pads=(1, 0, 2, 1)),
             dict(n=1, h=30, w=30, c=256, kh=1, kw=1, oc=272, strides=(1, 1), dilations=(1, 1),
                  pads=(0, 0, 0, 0)),
             dict(n=2, h=21, w=21, c=192, kh=1, kw=1, oc=96, strides=(1, 1), dilations=(1, 1),
                  pads=(0, 0, 0, 0))]
    for case in fixed:
        epi = random_epilogue(rng, case["oc"])
        seed = int(rng.integers(0, 2**31))
        for algo in ["ref", "dp4a"] + MMA_TILES + ["auto"]:
            run_conv(ck, np.random.default_rng(seed), case, epi, algo, "conv")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", default=cuda_lib.DEFAULT_LIB)
    ap.add_argument("--cases", type=int, default=60, help="random conv cases (x every algorithm and mma tile)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    lib = cuda_lib.Lib(args.lib)
    try:
        dev = lib.device()
    except cuda_lib.CudaError as e:
        print(f"no usable CUDA device: {e}")
        return 2
    print(f"device: {dev['name']} sm_{dev['cc'][0]}{dev['cc'][1]}, {dev['sms']} SMs")
    ck = Checker(lib, args.verbose)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    for name, fn in (("elementwise", test_elementwise), ("channel_mul", test_channel_mul),
                     ("add", test_add),
                     ("concat", test_concat), ("pools", test_pools)):
        fn(ck, rng)
        print(f"{name}: {ck.passed} passed, {ck.failed} failed so far")
    test_convs(ck, rng, args.cases)
    print(f"conv/depthwise/matmul: {ck.passed} passed, {ck.failed} failed in total "
          f"({time.time() - t0:.0f} s)")
    return 0 if ck.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
