/* tfq8 CUDA kernels: a small, framework-free C API.
 *
 * Every function takes device pointers, host-side shapes/scales and a cudaStream_t, enqueues
 * its kernels on that stream and returns a cudaError_t (cudaSuccess, cudaErrorInvalidValue for
 * a bad argument, cudaErrorNotSupported when a forced algorithm cannot run the shape, or the
 * launch error). Nothing allocates, synchronizes or reads device memory on the host.
 *
 * Numerics: docs/int8_numerics.md. Every kernel gives bit-identical results to the CPU reference
 * (f32 steps are single IEEE operations via __fmul_rn/__fadd_rn, conversions via
 * __float2int_rn/__int2float_rn; the library is compiled with --fmad=false).
 *
 * Used by the TF glue (custom_ops/tf/gpu_kernels.cc) and by the standalone harness
 * (custom_ops/kernels/cuda/tools/), which needs no TensorFlow.
 */
#ifndef TFQ8_KERNELS_CUDA_TFQ8_CUDA_H_
#define TFQ8_KERNELS_CUDA_TFQ8_CUDA_H_

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise --------------------------------------------------------------------------- */

/* y = clamp(rne(x * float(1/scale)), -zp, 255-zp) + zp; NaN -> 0. */
cudaError_t tfq8_cuda_quantize(int64_t n, const float* x, uint8_t* y, float scale, int zero_point,
                               cudaStream_t stream);
/* y = float(x - zp) * scale. */
cudaError_t tfq8_cuda_dequantize_u8(int64_t n, const uint8_t* x, float* y, float scale,
                                    int zero_point, cudaStream_t stream);
/* y = float(x) * scale (int32 input, zero point 0). */
cudaError_t tfq8_cuda_dequantize_s32(int64_t n, const int32_t* x, float* y, float scale,
                                     cudaStream_t stream);
cudaError_t tfq8_cuda_requantize(int64_t n, const uint8_t* x, uint8_t* y, float in_scale,
                                 int in_zero_point, float out_scale, int out_zero_point,
                                 cudaStream_t stream);
/* y[i] = table[x[i]] with a 256-entry u8 table in device memory (Tfq8Lookup). */
cudaError_t tfq8_cuda_lookup(int64_t n, const uint8_t* x, const uint8_t* table, uint8_t* y,
                             cudaStream_t stream);

/* Tfq8ChannelMul: x has n elements in rows of `channels`, rows_per_sample rows per sample; the
 * f32 gate (device memory) has one row of `channels` per sample (per_sample != 0) or one shared
 * row. y = rne(clamp(float(x - in_zp) * (gate * f32(in_scale / out_scale)))) + out_zp. */
cudaError_t tfq8_cuda_channel_mul(int64_t n, int64_t channels, int64_t rows_per_sample,
                                  int per_sample, const uint8_t* x, const float* gate,
                                  float in_scale, int in_zero_point, float out_scale,
                                  int out_zero_point, uint8_t* y, cudaStream_t stream);

enum Tfq8Activation { TFQ8_ACT_NONE = 0, TFQ8_ACT_RELU = 1, TFQ8_ACT_RELU6 = 2, TFQ8_ACT_CLIP = 3 };

/* Elementwise add of two u8 tensors of n elements with their own (scale, zp); activation NONE,
 * RELU or RELU6. */
cudaError_t tfq8_cuda_add(int64_t n, const uint8_t* a, float a_scale, int a_zero_point,
                          const uint8_t* b, float b_scale, int b_zero_point, uint8_t* y,
                          float out_scale, int out_zero_point, int activation,
                          cudaStream_t stream);

/* Concat of num_inputs u8 tensors along an axis. Each input i is viewed as [outer, axis_len[i] *
 * inner]; the output as [outer, sum(axis_len) * inner]. inputs is a HOST array of device
 * pointers; each input is requantized to (out_scale, out_zp) (copied when its qparams match). */
cudaError_t tfq8_cuda_concat(int num_inputs, const uint8_t* const* inputs, const int64_t* axis_len,
                             const float* in_scales, const int* in_zero_points, int64_t outer,
                             int64_t inner, uint8_t* y, float out_scale, int out_zero_point,
                             cudaStream_t stream);

/* ---- pooling (NHWC u8) --------------------------------------------------------------------- */

typedef struct Tfq8PoolShape {
  int64_t n, h, w, c;     /* input */
  int64_t oh, ow;         /* output */
  int kh, kw;             /* window */
  int stride_h, stride_w;
  int pad_t, pad_l;       /* TF SAME: pad_t = max((oh-1)*sh + kh - h, 0) / 2; VALID: 0 */
} Tfq8PoolShape;

/* Fills oh/ow/pad_t/pad_l from the other fields with TF's VALID (same=0) or SAME (same=1) rule. */
void tfq8_pool_shape_finish(Tfq8PoolShape* s, int same);

cudaError_t tfq8_cuda_max_pool(const Tfq8PoolShape* s, const uint8_t* x, uint8_t* y,
                               cudaStream_t stream);
/* q = (sum + cnt/2) / cnt over the valid (non-padded) window elements. */
cudaError_t tfq8_cuda_avg_pool(const Tfq8PoolShape* s, const uint8_t* x, uint8_t* y,
                               cudaStream_t stream);
/* Global average over H and W: y[n, c] = (sum + hw/2) / hw. */
cudaError_t tfq8_cuda_mean(int64_t n, int64_t h, int64_t w, int64_t c, const uint8_t* x,
                           uint8_t* y, cudaStream_t stream);

/* ---- convolution / depthwise / matmul with the fused epilogue ------------------------------- */

typedef struct Tfq8ConvShape {
  int64_t n, h, w, c;       /* input NHWC */
  int64_t kh, kw;           /* filter [kh, kw, c, oc] (conv) or [kh, kw, c, m] (depthwise) */
  int64_t oc;               /* output channels (depthwise: c * m) */
  int64_t oh, ow;           /* output spatial size */
  int stride_h, stride_w, dilation_h, dilation_w;
  int pad_t, pad_b, pad_l, pad_r;
  int depthwise;            /* 1: depthwise, channel multiplier m = oc / c */
} Tfq8ConvShape;

enum Tfq8OutType { TFQ8_OUT_U8 = 0, TFQ8_OUT_F32 = 1, TFQ8_OUT_S32 = 2 };

typedef struct Tfq8Epilogue {
  float input_scale;
  int input_zero_point;
  int bias_is_int32;        /* bias: int32 [oc] in accumulator units, else f32 [oc] real units;
                               NULL bias pointer = no bias */
  int per_channel;          /* filter_scale has oc entries (1) or one entry (0) */
  int has_summand;
  float summand_scale;
  int summand_zero_point;
  int activation;           /* Tfq8Activation */
  float clip_min, clip_max;
  int out_type;             /* Tfq8OutType */
  float output_scale;       /* ignored for f32/s32 output */
  int output_zero_point;
} Tfq8Epilogue;

enum Tfq8ConvAlgo {
  TFQ8_CONV_AUTO = 0,
  TFQ8_CONV_REF = 1,   /* one thread per output element, any shape */
  TFQ8_CONV_DP4A = 2,  /* dp4a.u32.s32, needs c % 4 == 0 (conv only) */
  TFQ8_CONV_MMA = 3,   /* tensor cores (mma.sync m16n8k32 u8*s8, sm_80+; wgmma on sm_90a builds);
                          c % 16 == 0, or small c: row gather (dilation_w 1, kw*c <= 24, e.g.
                          7x7x3) or byte gather (roundup(kh*kw*c, 64) <= 512); block tile and
                          kernel chosen by shape (see conv.cu) */
  /* MMA with a forced block tile (tests cover every tile on any GPU; a tile a shape's kernel
     does not offer returns cudaErrorNotSupported): */
  TFQ8_CONV_MMA_64X64 = 4,
  TFQ8_CONV_MMA_64X128 = 5,
  TFQ8_CONV_MMA_128X128 = 6,
  /* pipelined kernel only (c % 16 == 0; small-c gather shapes return cudaErrorNotSupported): */
  TFQ8_CONV_MMA_128X256 = 7,
  TFQ8_CONV_MMA_256X128 = 8,
  TFQ8_CONV_MMA_256X64 = 9,
  TFQ8_CONV_MMA_128X64 = 10, /* pipelined or small-c row gather */
  /* wgmma.mma_async (sm_90a: a library built with TFQ8_CUDA_ARCHS containing 90a, running on a
     compute capability 9.0 GPU), c % 16 == 0; cudaErrorNotSupported elsewhere: */
  TFQ8_CONV_WGMMA_128X64 = 11,
  TFQ8_CONV_WGMMA_128X128 = 12,
  TFQ8_CONV_WGMMA_128X256 = 13,
  /* resident-K 1x1 kernel (mma.sync, sm_80+): kh = kw = 1, c % 16 == 0, roundup(c, 64) <= 256;
     persistent blocks keep their weight tile in shared memory and load the next full-K A tile
     while multiplying / writing the current one; cudaErrorNotSupported for other shapes: */
  TFQ8_CONV_MMA1X1_128X128 = 14,
  TFQ8_CONV_MMA1X1_128X64 = 15,
};

/* Computes oh/ow from the other fields (explicit padding); returns 0, or -1 if the window does
 * not fit. */
int tfq8_conv_shape_finish(Tfq8ConvShape* s);

/* Bytes of device workspace tfq8_cuda_conv2d needs (packed weights + per-channel epilogue
 * constants); 256-byte aligned pieces. */
size_t tfq8_cuda_conv2d_workspace_size(const Tfq8ConvShape* s);

/* The algorithm AUTO picks for this shape on the current device (never AUTO; MMA comes back
 * as the concrete tile, TFQ8_CONV_MMA_*). */
int tfq8_cuda_conv2d_select(const Tfq8ConvShape* s);
const char* tfq8_cuda_conv_algo_name(int algo);

/* Convolution (s->depthwise = 0) or depthwise convolution (s->depthwise = 1) of u8 NHWC x with
 * int8 filter w, bias (f32 or int32, may be NULL), filter_scale (f32, oc or 1 entries), optional
 * summand (u8, shaped like the output), into y (u8 / f32 / int32 per e->out_type). workspace must
 * hold tfq8_cuda_conv2d_workspace_size(s) bytes (256-byte aligned). The workspace is rewritten on
 * every call (weights are packed on the stream before the convolution runs). */
cudaError_t tfq8_cuda_conv2d(const Tfq8ConvShape* s, const Tfq8Epilogue* e, const uint8_t* x,
                             const int8_t* w, const void* bias, const float* filter_scale,
                             const uint8_t* summand, void* y, void* workspace, int algo,
                             cudaStream_t stream);

/* The two halves of tfq8_cuda_conv2d, for callers that cache the prepared workspace (the
 * filter, bias and scales are constants of a graph) or time them apart:
 * prepare packs w and computes the per-channel constants into workspace; run reads x, the
 * workspace (and w itself for depthwise) and writes y. The epilogue must be the same in both. */
cudaError_t tfq8_cuda_conv2d_prepare(const Tfq8ConvShape* s, const Tfq8Epilogue* e,
                                     const int8_t* w, const void* bias, const float* filter_scale,
                                     void* workspace, cudaStream_t stream);
cudaError_t tfq8_cuda_conv2d_run(const Tfq8ConvShape* s, const Tfq8Epilogue* e, const uint8_t* x,
                                 const int8_t* w, const uint8_t* summand, void* y,
                                 const void* workspace, int algo, cudaStream_t stream);

/* MatMul: x [n, k] u8, w [k, oc] int8; same epilogue; a 1x1 convolution of an [n,1,1,k] image. */
void tfq8_matmul_shape(int64_t n, int64_t k, int64_t oc, Tfq8ConvShape* s);

#ifdef __cplusplus
}
#endif

#endif /* TFQ8_KERNELS_CUDA_TFQ8_CUDA_H_ */
