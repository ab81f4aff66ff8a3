"""Builds tfq8: the Python package plus libtfq8_ops.so compiled from custom_ops/.

The op library is compiled with g++ and TensorFlow's own flags (tf.sysconfig), so TensorFlow
must be installed first and the build must see it:

    pip install "tensorflow==2.21.*" setuptools wheel
    pip install --no-build-isolation .          # or -e . for development

ISA-specific files get per-file flags chosen by their suffix (never -march=native; the kernels
dispatch at run time):  *_avx2.cc, *_avxvnni.cc, *_avx512.cc, *_amx.cc.
CUDA: files *.cu / *.cu.cc are compiled with nvcc when it is on the PATH (TFQ8_CUDA=1 forces it
and fails without nvcc; TFQ8_CUDA=0 skips it). TFQ8_CUDA_ARCHS (default "80;90a") picks SASS targets;
"90a" (H100/H200 only) also compiles the wgmma kernels (TFQ8_HAVE_SM90A), "90" leaves them out.
"""
import concurrent.futures
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
LIB_NAME = "libtfq8_ops.so"

ISA_FLAGS = {
    "_avx2.cc": ["-mavx2", "-mfma", "-mf16c"],
    "_avxvnni.cc": ["-mavx2", "-mfma", "-mf16c", "-mavxvnni"],
    "_avx512.cc": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl",
                   "-mavx512dq", "-mavx512vnni"],
    "_amx.cc": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl",
                "-mavx512dq", "-mavx512vnni", "-mamx-tile", "-mamx-int8"],
}
# -ffp-contract=off: the reference and SIMD epilogues must round identically (no FMA contraction).
COMMON_FLAGS = ["-O2", "-fPIC", "-ffp-contract=off", "-Wno-deprecated-declarations",
                "-Wno-unused-result", f"-I{ROOT}"]


def _die(msg):
    sys.stderr.write(f"\n*** tfq8 build failed: {msg}\n\n")
    raise SystemExit(1)


def _tf_flags():
    try:
        import tensorflow as tf  # noqa: F401 (only for its build flags)
    except ImportError as e:
        _die("TensorFlow is not importable in the build environment "
             f"({e}). Install it first: pip install 'tensorflow==2.21.*', then build with "
             "pip install --no-build-isolation .")
    return tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags(), tf.__version__


def _sources():
    cc, cu = [], []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "custom_ops")):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            if f.endswith(".cu") or f.endswith(".cu.cc"):
                cu.append(path)
            elif f.endswith(".cc") and not f.endswith("_test.cc") and "/tools/" not in path:
                cc.append(path)
    return sorted(cc), sorted(cu)


def _isa_flags(path):
    for suffix, flags in ISA_FLAGS.items():
        if path.endswith(suffix):
            return flags
    return []


def _cuda_wanted():
    mode = os.environ.get("TFQ8_CUDA", "auto").lower()
    nvcc = shutil.which("nvcc")
    if mode in ("0", "off", "false", "no"):
        return None
    if mode in ("1", "on", "true", "yes"):
        if nvcc is None:
            _die("TFQ8_CUDA=1 but nvcc is not on the PATH; install the CUDA toolkit or unset "
                 "TFQ8_CUDA for a CPU-only build")
        return nvcc
    return nvcc


def _run(cmd, what):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        _die(f"compiling {os.path.relpath(what, ROOT)} failed (command: {shlex.join(cmd[:6])} ...); "
             "the compiler output is above")


def _newest_header_mtime():
    newest = os.path.getmtime(__file__)
    for dirpath, _, files in os.walk(os.path.join(ROOT, "custom_ops")):
        for f in files:
            if f.endswith((".h", ".cuh")):
                newest = max(newest, os.path.getmtime(os.path.join(dirpath, f)))
    return newest


def build_library(output_path, obj_dir, jobs=None, verbose=False):
    """Compiles custom_ops/ into output_path; object files are cached in obj_dir."""
    compile_flags, link_flags, tf_version = _tf_flags()
    cc, cu = _sources()
    nvcc = _cuda_wanted()
    defines = [f'-DTFQ8_TF_VERSION="{tf_version}"']
    archs = [a for a in os.environ.get("TFQ8_CUDA_ARCHS", "80;90a").split(";") if a]
    if nvcc:
        defines.append("-DTFQ8_WITH_CUDA=1")
        if "90a" in archs:
            defines.append("-DTFQ8_HAVE_SM90A=1")
    # Objects depend on the TF version, on CUDA being on and on its SASS targets: one cache per
    # configuration.
    config = f"cuda{'-'.join(archs)}" if nvcc else "cpu"
    obj_dir = os.path.join(obj_dir, f"tf{tf_version}-{config}")
    os.makedirs(obj_dir, exist_ok=True)
    headers_mtime = _newest_header_mtime()
    jobs = jobs or max(1, os.cpu_count() or 1)

    def obj_for(src):
        rel = os.path.relpath(src, ROOT).replace(os.sep, "_")
        return os.path.join(obj_dir, rel + ".o")

    def stale(src, obj):
        return (not os.path.exists(obj) or os.path.getmtime(obj) < os.path.getmtime(src)
                or os.path.getmtime(obj) < headers_mtime)

    def compile_cc(src):
        obj = obj_for(src)
        if stale(src, obj):
            cmd = (["g++", "-c", src, "-o", obj] + COMMON_FLAGS + compile_flags + defines
                   + _isa_flags(src))
            if verbose:
                print(" ".join(cmd))
            _run(cmd, src)
        return obj

    def compile_cu(src):
        obj = obj_for(src)
        if stale(src, obj):
            gencode = []
            for a in archs:
                gencode += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
            tf_include = [f for f in compile_flags if f.startswith("-I")][0][2:]
            # --fmad=false: no FMA contraction, so the epilogue rounds like the CPU reference.
            cmd = ([nvcc, "-c", "-x", "cu", src, "-o", obj, "-O3", "--std=c++17", "--fmad=false",
                    "-Xcompiler", "-fPIC", "--expt-relaxed-constexpr", "-w", f"-I{ROOT}",
                    "-DGOOGLE_CUDA=1", "-DTFQ8_WITH_CUDA=1"]
                   # nvcc uses its own CUDA headers: TF's bundled CUDA 12.5 headers
                   # (third_party/gpus/cuda/include) clash with nvcc 13's host stubs.
                   + [f for f in compile_flags
                      if f != "--std=c++17" and "third_party/gpus/cuda/include" not in f]
                   + defines + gencode)
            if verbose:
                print(" ".join(cmd))
            _run(cmd, src)
        return obj

    if nvcc:
        tf_include = [f for f in compile_flags if f.startswith("-I")][0][2:]
        compile_flags = compile_flags + [f"-I{tf_include}/third_party/gpus/cuda/include"]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        objs = list(pool.map(compile_cc, cc))
        if nvcc:
            objs += list(pool.map(compile_cu, cu))
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    tmp = output_path + ".tmp"
    _run(["g++", "-shared", "-o", tmp] + objs + link_flags + ["-Wl,--no-undefined"], output_path)
    os.replace(tmp, output_path)


class BuildOpLibrary(build_ext):
    """Builds libtfq8_ops.so in place of a Python extension."""

    def get_ext_filename(self, ext_name):
        return os.path.join(*ext_name.split(".")[:-1], LIB_NAME)

    def build_extension(self, ext):
        out = self.get_ext_fullpath(ext.name)
        build_library(out, os.path.join(ROOT, "build", "tfq8_objs"), verbose=self.verbose > 1)


setup(
    name="tfq8",
    version="0.1.0",
    description="INT8 post-training quantization for TensorFlow CNNs, with fused INT8 ops",
    long_description=open(os.path.join(ROOT, "README.md")).read()
    if os.path.exists(os.path.join(ROOT, "README.md")) else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfq8", "tfq8.*"]),
    python_requires=">=3.9",
    install_requires=["tensorflow==2.21.*", "numpy", "absl-py", "protobuf"],
    extras_require={"test": ["pytest", "hypothesis", "tf-keras==2.21.*", "scikit-image",
                             "scikit-learn"]},
    ext_modules=[Extension("tfq8.libtfq8_ops", sources=[])],
    cmdclass={"build_ext": BuildOpLibrary},
    entry_points={"console_scripts": ["tfq8=tfq8.cli:run"]},
    zip_safe=False,
)
