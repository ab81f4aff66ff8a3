// What this op library was built against, readable with ctypes before the library is handed to
// TensorFlow (tfq8/ops.py refuses a library built for another TensorFlow with a clear message).
#ifndef TFQ8_TF_VERSION
#define TFQ8_TF_VERSION "unknown"
#endif
#if defined(TFQ8_WITH_CUDA) && TFQ8_WITH_CUDA
#define TFQ8_CUDA_INFO "yes"
#else
#define TFQ8_CUDA_INFO "no"
#endif

extern "C" __attribute__((visibility("default"))) const char* tfq8_build_info() {
  return "tensorflow=" TFQ8_TF_VERSION "\ncuda=" TFQ8_CUDA_INFO "\n";
}
