// What this op library was built against. tfq8/ops.py finds the marker string in the file
// without loading it (loading a library built for another TensorFlow could crash), and refuses
// a mismatch with a message that says how to rebuild.
#ifndef TFQ8_TF_VERSION
#define TFQ8_TF_VERSION "unknown"
#endif
#if defined(TFQ8_WITH_CUDA) && TFQ8_WITH_CUDA
#define TFQ8_CUDA_INFO "yes"
#else
#define TFQ8_CUDA_INFO "no"
#endif

extern "C" __attribute__((visibility("default"))) const char* tfq8_build_info() {
  return "TFQ8_BUILD_INFO\ntensorflow=" TFQ8_TF_VERSION "\ncuda=" TFQ8_CUDA_INFO "\nEND\n";
}
