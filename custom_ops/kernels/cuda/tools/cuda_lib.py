"""ctypes binding of libtfq8_cuda_test.so (the C API of custom_ops/kernels/cuda/tfq8_cuda.h plus
the test helpers of harness_api.cpp). Needs only numpy; no TensorFlow, no PyTorch."""
import ctypes
import os
import subprocess

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_LIB = os.path.join(HERE, "build", "libtfq8_cuda_test.so")

ACT = {"NONE": 0, "RELU": 1, "RELU6": 2, "CLIP": 3}
OUT = {"uint8": 0, "float32": 1, "int32": 2}
ALGO = {"auto": 0, "ref": 1, "dp4a": 2, "mma": 3, "mma64x64": 4, "mma64x128": 5,
        "mma128x128": 6, "mma128x256": 7, "mma256x128": 8, "mma256x64": 9,
        "mma128x64": 10, "wgmma128x64": 11, "wgmma128x128": 12, "wgmma128x256": 13,
        "mma1x1_128x128": 14, "mma1x1_128x64": 15}
MMA_TILES = ["mma64x64", "mma64x128", "mma128x64", "mma128x128", "mma256x64", "mma128x256",
             "mma256x128", "wgmma128x64", "wgmma128x128", "wgmma128x256", "mma1x1_128x128",
             "mma1x1_128x64"]


class ConvShape(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int64) for f in ("n", "h", "w", "c", "kh", "kw", "oc", "oh", "ow")] + \
        [(f, ctypes.c_int) for f in ("stride_h", "stride_w", "dilation_h", "dilation_w", "pad_t",
                                     "pad_b", "pad_l", "pad_r", "depthwise")]


class Epilogue(ctypes.Structure):
    _fields_ = [("input_scale", ctypes.c_float), ("input_zero_point", ctypes.c_int),
                ("bias_is_int32", ctypes.c_int), ("per_channel", ctypes.c_int),
                ("has_summand", ctypes.c_int), ("summand_scale", ctypes.c_float),
                ("summand_zero_point", ctypes.c_int), ("activation", ctypes.c_int),
                ("clip_min", ctypes.c_float), ("clip_max", ctypes.c_float),
                ("out_type", ctypes.c_int), ("output_scale", ctypes.c_float),
                ("output_zero_point", ctypes.c_int)]


class PoolShape(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int64) for f in ("n", "h", "w", "c", "oh", "ow")] + \
        [(f, ctypes.c_int) for f in ("kh", "kw", "stride_h", "stride_w", "pad_t", "pad_l")]


class CudaError(RuntimeError):
    pass


def build(lib_path=DEFAULT_LIB):
    """Builds the library with build.sh when it is missing."""
    if not os.path.exists(lib_path):
        subprocess.run(["bash", os.path.join(HERE, "build.sh"), os.path.dirname(lib_path)],
                       check=True)
    return lib_path


class Lib:
    def __init__(self, path=DEFAULT_LIB):
        L = self.L = ctypes.CDLL(build(path))
        vp, i64, f, i = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
        L.tfq8t_malloc.restype = vp
        L.tfq8t_malloc.argtypes = [ctypes.c_size_t]
        L.tfq8t_free.argtypes = [vp]
        L.tfq8t_h2d.argtypes = [vp, vp, ctypes.c_size_t]
        L.tfq8t_d2h.argtypes = [vp, vp, ctypes.c_size_t]
        L.tfq8t_memset.argtypes = [vp, i, ctypes.c_size_t]
        L.tfq8t_error_string.restype = ctypes.c_char_p
        L.tfq8t_time_conv.restype = f
        L.tfq8t_time_conv.argtypes = [ctypes.POINTER(ConvShape), ctypes.POINTER(Epilogue), vp, vp,
                                      vp, vp, vp, vp, vp, i, i, i, i]
        L.tfq8_cuda_quantize.argtypes = [i64, vp, vp, f, i, vp]
        L.tfq8_cuda_dequantize_u8.argtypes = [i64, vp, vp, f, i, vp]
        L.tfq8_cuda_dequantize_s32.argtypes = [i64, vp, vp, f, vp]
        L.tfq8_cuda_requantize.argtypes = [i64, vp, vp, f, i, f, i, vp]
        L.tfq8_cuda_lookup.argtypes = [i64, vp, vp, vp, vp]
        L.tfq8_cuda_channel_mul.argtypes = [i64, i64, i64, i, vp, vp, f, i, f, i, vp, vp]
        L.tfq8_cuda_add.argtypes = [i64, vp, f, i, vp, f, i, vp, f, i, i, vp]
        L.tfq8_cuda_concat.argtypes = [i, ctypes.POINTER(vp), ctypes.POINTER(i64),
                                       ctypes.POINTER(f), ctypes.POINTER(i), i64, i64, vp, f, i,
                                       vp]
        L.tfq8_pool_shape_finish.argtypes = [ctypes.POINTER(PoolShape), i]
        L.tfq8_pool_shape_finish.restype = None
        for name in ("tfq8_cuda_max_pool", "tfq8_cuda_avg_pool"):
            getattr(L, name).argtypes = [ctypes.POINTER(PoolShape), vp, vp, vp]
        L.tfq8_cuda_mean.argtypes = [i64, i64, i64, i64, vp, vp, vp]
        L.tfq8_conv_shape_finish.argtypes = [ctypes.POINTER(ConvShape)]
        L.tfq8_matmul_shape.argtypes = [i64, i64, i64, ctypes.POINTER(ConvShape)]
        L.tfq8_matmul_shape.restype = None
        L.tfq8_cuda_conv2d_workspace_size.restype = ctypes.c_size_t
        L.tfq8_cuda_conv2d_workspace_size.argtypes = [ctypes.POINTER(ConvShape)]
        L.tfq8_cuda_conv2d_select.argtypes = [ctypes.POINTER(ConvShape)]
        L.tfq8_cuda_conv_algo_name.restype = ctypes.c_char_p
        L.tfq8_cuda_conv2d.argtypes = [ctypes.POINTER(ConvShape), ctypes.POINTER(Epilogue), vp,
                                       vp, vp, vp, vp, vp, vp, i, vp]
        L.tfq8_cuda_conv2d_prepare.argtypes = [ctypes.POINTER(ConvShape),
                                               ctypes.POINTER(Epilogue), vp, vp, vp, vp, vp]
        L.tfq8_cuda_conv2d_run.argtypes = [ctypes.POINTER(ConvShape), ctypes.POINTER(Epilogue),
                                           vp, vp, vp, vp, vp, i, vp]
        self._live = []

    # -- memory --------------------------------------------------------------------------------
    def check(self, err, what=""):
        if err != 0:
            raise CudaError(f"{what}: CUDA error {err} ({self.L.tfq8t_error_string(err).decode()})")

    def alloc(self, nbytes):
        p = self.L.tfq8t_malloc(nbytes)
        if not p:
            raise CudaError(f"cudaMalloc({nbytes}) failed")
        self._live.append(p)
        return p

    def to_dev(self, a):
        a = np.ascontiguousarray(a)
        p = self.alloc(a.nbytes)
        self.check(self.L.tfq8t_h2d(p, a.ctypes.data, a.nbytes), "h2d")
        return p

    def empty(self, shape, dtype, fill=0xA5):
        """Device buffer filled with a poison byte, so unwritten outputs show up."""
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        p = self.alloc(n)
        self.check(self.L.tfq8t_memset(p, fill, n), "memset")
        return p

    def to_host(self, p, shape, dtype):
        out = np.empty(shape, dtype)
        self.check(self.L.tfq8t_sync(), "kernel")
        self.check(self.L.tfq8t_d2h(out.ctypes.data, p, out.nbytes), "d2h")
        return out

    def free_all(self):
        for p in self._live:
            self.L.tfq8t_free(p)
        self._live = []

    def device(self):
        name = ctypes.create_string_buffer(256)
        ma, mi, sms, clk = (ctypes.c_int() for _ in range(4))
        self.check(self.L.tfq8t_device(name, 256, ctypes.byref(ma), ctypes.byref(mi),
                                       ctypes.byref(sms), ctypes.byref(clk)), "device")
        return {"name": name.value.decode(), "cc": (ma.value, mi.value), "sms": sms.value,
                "clock_khz": clk.value}
