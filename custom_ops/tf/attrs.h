// Attributes shared by the windowed/epilogue ops (Tfq8Conv2D, Tfq8DepthwiseConv2D, Tfq8MatMul; op
// definitions in custom_ops/ops/tfq8_ops.cc): read and validated once here, for the CPU and the GPU
// kernels alike, each of which converts them to its own kernel-specific struct.
#ifndef TFQ8_TF_ATTRS_H_
#define TFQ8_TF_ATTRS_H_

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "custom_ops/tf/common.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tfq8 {

// strides / dilations / explicit_paddings of a windowed op.
struct WindowAttrs {
  int stride_h = 1, stride_w = 1;
  int dil_h = 1, dil_w = 1;
  int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
};

inline ::tensorflow::Status ReadWindowAttrs(::tensorflow::OpKernelConstruction* ctx,
                                            WindowAttrs* w) {
  namespace errors = ::tensorflow::errors;
  std::vector<int32_t> strides, dilations, pads;
  TF_RETURN_IF_ERROR(ctx->GetAttr("strides", &strides));
  TF_RETURN_IF_ERROR(ctx->GetAttr("dilations", &dilations));
  TF_RETURN_IF_ERROR(ctx->GetAttr("explicit_paddings", &pads));
  if (!(strides.size() == 2 && strides[0] > 0 && strides[1] > 0)) {
    return errors::InvalidArgument("strides must be 2 positive integers [height, width]");
  }
  if (!(dilations.size() == 2 && dilations[0] > 0 && dilations[1] > 0)) {
    return errors::InvalidArgument("dilations must be 2 positive integers [height, width]");
  }
  if (!(pads.size() == 4 && pads[0] >= 0 && pads[1] >= 0 && pads[2] >= 0 && pads[3] >= 0)) {
    return errors::InvalidArgument(
        "explicit_paddings must be 4 integers >= 0 [top, bottom, left, right]");
  }
  w->stride_h = strides[0];
  w->stride_w = strides[1];
  w->dil_h = dilations[0];
  w->dil_w = dilations[1];
  w->pad_top = pads[0];
  w->pad_bottom = pads[1];
  w->pad_left = pads[2];
  w->pad_right = pads[3];
  return ::tensorflow::OkStatus();
}

// Copies the window into a kernel's shape struct with the same field names (ConvShape,
// DwConvShape).
template <typename T>
void CopyWindowAttrs(const WindowAttrs& w, T* out) {
  out->stride_h = w.stride_h;
  out->stride_w = w.stride_w;
  out->dil_h = w.dil_h;
  out->dil_w = w.dil_w;
  out->pad_top = w.pad_top;
  out->pad_bottom = w.pad_bottom;
  out->pad_left = w.pad_left;
  out->pad_right = w.pad_right;
}

// The fused epilogue's attributes (input/summand/output quantization, bias type, activation).
struct EpilogueAttrs {
  enum class Activation { kNone, kRelu, kRelu6, kClip };
  enum class OutType { kU8, kF32, kS32 };
  float input_scale = 1.0f;
  int input_zero_point = 0;
  bool bias_is_int32 = false;
  bool has_summand = false;
  float summand_scale = 1.0f;
  int summand_zero_point = 0;
  Activation activation = Activation::kNone;
  float clip_min = 0.0f, clip_max = 6.0f;
  OutType out_type = OutType::kU8;
  float output_scale = 1.0f;
  int output_zero_point = 0;
};

inline ::tensorflow::Status ReadEpilogueAttrs(::tensorflow::OpKernelConstruction* ctx,
                                              EpilogueAttrs* a) {
  namespace errors = ::tensorflow::errors;
  using Act = EpilogueAttrs::Activation;
  using Out = EpilogueAttrs::OutType;
  TF_RETURN_IF_ERROR(ctx->GetAttr("input_scale", &a->input_scale));
  TF_RETURN_IF_ERROR(ctx->GetAttr("input_zero_point", &a->input_zero_point));
  TF_RETURN_IF_ERROR(CheckQParams("input", a->input_scale, a->input_zero_point));
  ::tensorflow::DataType tbias, out_type;
  TF_RETURN_IF_ERROR(ctx->GetAttr("Tbias", &tbias));
  a->bias_is_int32 = tbias == ::tensorflow::DT_INT32;
  int num_summand;
  TF_RETURN_IF_ERROR(ctx->GetAttr("num_summand", &num_summand));
  if (num_summand > 1) {
    return errors::InvalidArgument("num_summand must be 0 or 1, got ", num_summand);
  }
  a->has_summand = num_summand == 1;
  TF_RETURN_IF_ERROR(ctx->GetAttr("summand_scale", &a->summand_scale));
  TF_RETURN_IF_ERROR(ctx->GetAttr("summand_zero_point", &a->summand_zero_point));
  if (a->has_summand) {
    TF_RETURN_IF_ERROR(CheckQParams("summand", a->summand_scale, a->summand_zero_point));
  }
  std::string act;
  TF_RETURN_IF_ERROR(ctx->GetAttr("activation", &act));
  if (act == "NONE") a->activation = Act::kNone;
  else if (act == "RELU") a->activation = Act::kRelu;
  else if (act == "RELU6") a->activation = Act::kRelu6;
  else if (act == "CLIP") a->activation = Act::kClip;
  else return errors::InvalidArgument("unknown activation ", act);
  TF_RETURN_IF_ERROR(ctx->GetAttr("clip_min", &a->clip_min));
  TF_RETURN_IF_ERROR(ctx->GetAttr("clip_max", &a->clip_max));
  if (a->activation == Act::kClip &&
      !(std::isfinite(a->clip_min) && std::isfinite(a->clip_max) && a->clip_min <= a->clip_max)) {
    return errors::InvalidArgument("CLIP needs finite clip_min <= clip_max, got ", a->clip_min,
                                   " and ", a->clip_max);
  }
  TF_RETURN_IF_ERROR(ctx->GetAttr("out_type", &out_type));
  a->out_type = out_type == ::tensorflow::DT_UINT8   ? Out::kU8
                : out_type == ::tensorflow::DT_FLOAT ? Out::kF32
                                                     : Out::kS32;
  TF_RETURN_IF_ERROR(ctx->GetAttr("output_scale", &a->output_scale));
  TF_RETURN_IF_ERROR(ctx->GetAttr("output_zero_point", &a->output_zero_point));
  if (a->out_type == Out::kU8) {
    TF_RETURN_IF_ERROR(CheckQParams("output", a->output_scale, a->output_zero_point));
  }
  if (a->out_type == Out::kS32 && !(a->activation == Act::kNone && !a->has_summand)) {
    return errors::InvalidArgument(
        "out_type int32 returns the raw accumulator: it takes no activation (got ", act,
        ") and no summand (num_summand = ", num_summand, ")");
  }
  return ::tensorflow::OkStatus();
}

// Copies the attributes into a kernel's epilogue struct with the same field names (the CPU
// ConvEpilogueAttrs / DwEpilogueAttrs, the CUDA Tfq8Epilogue). Their activation and output-type
// enums number their values like EpilogueAttrs's (NONE, RELU, RELU6, CLIP; U8, F32, S32): each glue
// file static_asserts that for its kernel's enums.
template <typename T>
void CopyEpilogueAttrs(const EpilogueAttrs& a, T* out) {
  out->input_scale = a.input_scale;
  out->input_zero_point = a.input_zero_point;
  out->bias_is_int32 = a.bias_is_int32;
  out->has_summand = a.has_summand;
  out->summand_scale = a.summand_scale;
  out->summand_zero_point = a.summand_zero_point;
  out->activation = static_cast<decltype(out->activation)>(a.activation);
  out->clip_min = a.clip_min;
  out->clip_max = a.clip_max;
  out->out_type = static_cast<decltype(out->out_type)>(a.out_type);
  out->output_scale = a.output_scale;
  out->output_zero_point = a.output_zero_point;
}

}  // namespace tfq8

#endif  // TFQ8_TF_ATTRS_H_
