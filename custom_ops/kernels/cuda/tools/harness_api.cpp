// Test-only helpers linked into libtfq8_cuda_test.so next to the kernels: device memory,
// copies, device facts and cudaEvent timing, so the Python harness needs nothing but ctypes and
// numpy (and uses the same CUDA runtime as the kernels). Not part of the op library.
#include <cstring>

#include <cuda_runtime_api.h>

#include "custom_ops/kernels/cuda/tfq8_cuda.h"

extern "C" {

void* tfq8t_malloc(size_t n) {
  void* p = nullptr;
  return cudaMalloc(&p, n > 0 ? n : 1) == cudaSuccess ? p : nullptr;
}
int tfq8t_free(void* p) { return cudaFree(p); }
int tfq8t_h2d(void* dst, const void* src, size_t n) {
  return cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice);
}
int tfq8t_d2h(void* dst, const void* src, size_t n) {
  return cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost);
}
int tfq8t_memset(void* p, int v, size_t n) { return cudaMemset(p, v, n); }
int tfq8t_sync() { return cudaDeviceSynchronize(); }
const char* tfq8t_error_string(int e) { return cudaGetErrorString(static_cast<cudaError_t>(e)); }

// Device name, compute capability, SM count and clock (kHz; 0 where the runtime has none).
int tfq8t_device(char* name, int len, int* major, int* minor, int* sms, int* clock_khz) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  cudaDeviceProp prop;
  e = cudaGetDeviceProperties(&prop, dev);
  if (e != cudaSuccess) return e;
  std::strncpy(name, prop.name, len - 1);
  name[len - 1] = 0;
  *major = prop.major;
  *minor = prop.minor;
  *sms = prop.multiProcessorCount;
  if (cudaDeviceGetAttribute(clock_khz, cudaDevAttrClockRate, dev) != cudaSuccess) {
    cudaGetLastError();
    *clock_khz = 0;
  }
  return cudaSuccess;
}

// Milliseconds per call of tfq8_cuda_conv2d_run (prepare=0) or tfq8_cuda_conv2d_prepare
// (prepare=1), median-free mean over `iters` calls after `warmup`; negative cudaError_t on error.
float tfq8t_time_conv(const Tfq8ConvShape* s, const Tfq8Epilogue* e, const uint8_t* x,
                      const int8_t* w, const void* bias, const float* filter_scale,
                      const uint8_t* summand, void* y, void* ws, int algo, int prepare,
                      int warmup, int iters) {
  auto call = [&]() {
    return prepare ? tfq8_cuda_conv2d_prepare(s, e, w, bias, filter_scale, ws, 0)
                   : tfq8_cuda_conv2d_run(s, e, x, w, summand, y, ws, algo, 0);
  };
  for (int i = 0; i < warmup; ++i) {
    const cudaError_t err = call();
    if (err != cudaSuccess) return -static_cast<float>(err);
  }
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, 0);
  for (int i = 0; i < iters; ++i) call();
  cudaEventRecord(stop, 0);
  cudaError_t err = cudaEventSynchronize(stop);
  float ms = 0.0f;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (err == cudaSuccess) err = cudaGetLastError();
  return err == cudaSuccess ? ms / iters : -static_cast<float>(err);
}

}  // extern "C"
