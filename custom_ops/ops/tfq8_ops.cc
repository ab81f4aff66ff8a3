// Op definitions of tfq8: REGISTER_OP + shape functions only; kernels live in custom_ops/tf/.
//
// Conventions shared by every op (see docs/int8_numerics.md for the arithmetic):
//  * INT8 activations are uint8 tensors described by (scale, zero_point); zero point 0 for
//    non-negative tensors, 128 for "s8 shifted by +128".
//  * Weights are int8 (-127..127) with per-output-channel float scales ([OC]) or one scale ([1]).
//  * Spatial attributes use 2-element [height, width] lists; padding is explicit:
//    explicit_paddings = [top, bottom, left, right]; activations are NHWC.
//  * The optional residual summand is a list input of length num_summand (0 or 1).
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfq8 {
namespace {

using ::tensorflow::Status;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

Status GetPair(InferenceContext* c, const char* name, int64_t out[2]) {
  std::vector<int32_t> v;
  TF_RETURN_IF_ERROR(c->GetAttr(name, &v));
  if (v.size() != 2 || v[0] < 1 || v[1] < 1) {
    return ::tensorflow::errors::InvalidArgument(
        name, " must be 2 positive integers [height, width], got ", v.size(), " values");
  }
  out[0] = v[0];
  out[1] = v[1];
  return ::tensorflow::OkStatus();
}

Status GetPads(InferenceContext* c, int64_t pads[4]) {
  std::vector<int32_t> v;
  TF_RETURN_IF_ERROR(c->GetAttr("explicit_paddings", &v));
  if (v.size() != 4) {
    return ::tensorflow::errors::InvalidArgument(
        "explicit_paddings must be [top, bottom, left, right], got ", v.size(), " values");
  }
  for (int i = 0; i < 4; ++i) {
    if (v[i] < 0) return ::tensorflow::errors::InvalidArgument("explicit_paddings must be >= 0");
    pads[i] = v[i];
  }
  return ::tensorflow::OkStatus();
}

// Output spatial size of a windowed op with explicit padding; unknown stays unknown.
Status WindowedDim(InferenceContext* c, DimensionHandle in, int64_t k, int64_t stride,
                   int64_t dilation, int64_t pad_lo, int64_t pad_hi, DimensionHandle* out) {
  if (!c->ValueKnown(in)) {
    *out = c->UnknownDim();
    return ::tensorflow::OkStatus();
  }
  const int64_t eff_k = (k - 1) * dilation + 1;
  const int64_t padded = c->Value(in) + pad_lo + pad_hi;
  if (padded < eff_k) {
    return ::tensorflow::errors::InvalidArgument("window of size ", eff_k,
                                                 " does not fit the padded input of size ", padded);
  }
  *out = c->MakeDim((padded - eff_k) / stride + 1);
  return ::tensorflow::OkStatus();
}

// Conv2D / DepthwiseConv2D: input NHWC, filter [KH, KW, IC, OC] or [KH, KW, C, M].
Status ConvShape(InferenceContext* c, bool depthwise, bool grouped = false) {
  ShapeHandle input, filter;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &input));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &filter));
  int64_t strides[2], dilations[2], pads[4];
  TF_RETURN_IF_ERROR(GetPair(c, "strides", strides));
  TF_RETURN_IF_ERROR(GetPair(c, "dilations", dilations));
  TF_RETURN_IF_ERROR(GetPads(c, pads));
  DimensionHandle channels;
  if (grouped) {  // filter [KH, KW, IC / groups, OC]
    int64_t groups;
    TF_RETURN_IF_ERROR(c->GetAttr("groups", &groups));
    DimensionHandle group_channels;
    TF_RETURN_IF_ERROR(c->Multiply(c->Dim(filter, 2), groups, &group_channels));
    TF_RETURN_IF_ERROR(c->Merge(c->Dim(input, 3), group_channels, &channels));
  } else {
    TF_RETURN_IF_ERROR(c->Merge(c->Dim(input, 3), c->Dim(filter, 2), &channels));
  }
  DimensionHandle oh, ow, oc;
  if (!c->ValueKnown(c->Dim(filter, 0)) || !c->ValueKnown(c->Dim(filter, 1))) {
    oh = c->UnknownDim();
    ow = c->UnknownDim();
  } else {
    TF_RETURN_IF_ERROR(WindowedDim(c, c->Dim(input, 1), c->Value(c->Dim(filter, 0)), strides[0],
                                   dilations[0], pads[0], pads[1], &oh));
    TF_RETURN_IF_ERROR(WindowedDim(c, c->Dim(input, 2), c->Value(c->Dim(filter, 1)), strides[1],
                                   dilations[1], pads[2], pads[3], &ow));
  }
  if (depthwise) {
    TF_RETURN_IF_ERROR(c->Multiply(channels, c->Dim(filter, 3), &oc));
  } else {
    oc = c->Dim(filter, 3);
  }
  c->set_output(0, c->MakeShape({c->Dim(input, 0), oh, ow, oc}));
  return ::tensorflow::OkStatus();
}

Status MatMulShape(InferenceContext* c) {
  ShapeHandle input, filter;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &input));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &filter));
  DimensionHandle k;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(input, 1), c->Dim(filter, 0), &k));
  c->set_output(0, c->MakeShape({c->Dim(input, 0), c->Dim(filter, 1)}));
  return ::tensorflow::OkStatus();
}

// Pooling with TF's VALID / SAME padding semantics.
Status PoolShape(InferenceContext* c) {
  ShapeHandle input;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &input));
  int64_t ksize[2], strides[2];
  TF_RETURN_IF_ERROR(GetPair(c, "ksize", ksize));
  TF_RETURN_IF_ERROR(GetPair(c, "strides", strides));
  std::string padding;
  TF_RETURN_IF_ERROR(c->GetAttr("padding", &padding));
  DimensionHandle out[2];
  for (int i = 0; i < 2; ++i) {
    DimensionHandle in = c->Dim(input, 1 + i);
    if (!c->ValueKnown(in)) {
      out[i] = c->UnknownDim();
    } else if (padding == "SAME") {
      out[i] = c->MakeDim((c->Value(in) + strides[i] - 1) / strides[i]);
    } else {
      TF_RETURN_IF_ERROR(WindowedDim(c, in, ksize[i], strides[i], 1, 0, 0, &out[i]));
    }
  }
  c->set_output(0, c->MakeShape({c->Dim(input, 0), out[0], out[1], c->Dim(input, 3)}));
  return ::tensorflow::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
REGISTER_OP("Tfq8Quantize")
    .Input("input: float")
    .Output("output: uint8")
    .Attr("scale: float")
    .Attr("zero_point: int = 0")
    .Attr("check_nan: bool = true")
    .SetShapeFn(::tensorflow::shape_inference::UnchangedShape)
    .Doc(R"doc(
Quantizes f32 to uint8: q = clamp(rne(x / scale) + zero_point, 0, 255).

zero_point 0 for non-negative tensors, 128 for signed ones ("s8 shifted by +128"). Rounding is
round-half-to-even; see docs/int8_numerics.md. INT8 has no NaN: with check_nan (the default) a NaN
in the input fails the op (the FP32 model would have produced NaN, not a number); without it NaN
maps to the lowest code. The GPU kernel does not check.
)doc");

REGISTER_OP("Tfq8QuantizeChannels")
    .Input("input: float")
    .Output("output: uint8")
    .Attr("scale: float")
    .Attr("zero_point: int = 0")
    .Attr("channel_mul: list(float)")
    .Attr("channel_add: list(float)")
    .Attr("check_nan: bool = true")
    .SetShapeFn(::tensorflow::shape_inference::UnchangedShape)
    .Doc(R"doc(
Tfq8Quantize of x * channel_mul[c] + channel_add[c], c the index along the last axis (a model's
input normalization, absorbed so that the tensor is read once): with m = float(channel_mul[c] /
scale), a = float(channel_add[c] / scale) (double division), t = x * m, then t + a, each rounded
to f32, then clamped and rounded as Tfq8Quantize. One entry in each list applies to all channels;
else both lists have one entry per channel of the last axis. CPU only (TensorFlow places it on
the CPU). See docs/int8_numerics.md.
)doc");

REGISTER_OP("Tfq8Dequantize")
    .Input("input: T")
    .Output("output: float")
    .Attr("T: {uint8, int32}")
    .Attr("scale: float")
    .Attr("zero_point: int = 0")
    .SetShapeFn(::tensorflow::shape_inference::UnchangedShape)
    .Doc("Dequantizes uint8 or int32 to f32: (q - zero_point) * scale.");

REGISTER_OP("Tfq8Requantize")
    .Input("input: uint8")
    .Output("output: uint8")
    .Attr("input_scale: float")
    .Attr("input_zero_point: int = 0")
    .Attr("output_scale: float")
    .Attr("output_zero_point: int = 0")
    .SetShapeFn(::tensorflow::shape_inference::UnchangedShape)
    .Doc("Re-expresses a uint8 tensor with a new scale and zero point (round-half-to-even).");

REGISTER_OP("Tfq8Lookup")
    .Input("input: uint8")
    .Input("table: uint8")
    .Output("output: uint8")
    .Attr("function: string = ''")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle table;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &table));
      ::tensorflow::shape_inference::DimensionHandle n;
      TF_RETURN_IF_ERROR(c->WithValue(c->Dim(table, 0), 256, &n));
      c->set_output(0, c->input(0));
      return ::tensorflow::OkStatus();
    })
    .Doc(R"doc(
Elementwise table lookup: output[i] = table[input[i]].

The quantize pass writes a 256-entry table for a unary function between two INT8 tensors
(sigmoid, swish, hard-swish, GELU, ...): entry q is the function of the input's dequantized level
q, quantized with the output's scale and zero point. function: what the table computes, for
reports only.
)doc");

REGISTER_OP("Tfq8ChannelMul")
    .Input("input: uint8")
    .Input("gate: float")
    .Output("output: uint8")
    .Attr("input_scale: float")
    .Attr("input_zero_point: int = 0")
    .Attr("output_scale: float")
    .Attr("output_zero_point: int = 0")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle in, gate;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 2, &in));
      if (c->RankKnown(in)) {
        TF_RETURN_IF_ERROR(c->WithRank(c->input(1), c->Rank(in), &gate));
        ::tensorflow::shape_inference::DimensionHandle d;
        TF_RETURN_IF_ERROR(c->Merge(c->Dim(gate, -1), c->Dim(in, -1), &d));
      }
      c->set_output(0, c->input(0));
      return ::tensorflow::OkStatus();
    })
    .Doc(R"doc(
Multiplies each channel of a uint8 tensor by an f32 gate (squeeze-and-excitation).

input: [N, ..., C] uint8 with (input_scale, input_zero_point). gate: [N or 1, 1, ..., 1, C] f32,
e.g. the sigmoid of an SE branch. output[n, ..., c] = quantize(dequantize(input[n, ..., c]) ·
gate[n, c]) with (output_scale, output_zero_point): t = float(q − input_zero_point) ·
(gate · (input_scale / output_scale)), clamped to the u8 range (NaN to the lowest code),
rounded half to even. See docs/int8_numerics.md ("Channel multiply").
)doc");

REGISTER_OP("Tfq8Prelu")
    .Input("input: uint8")
    .Input("slopes: float")
    .Input("bias: float")
    .Output("output: uint8")
    .Attr("input_scale: float")
    .Attr("input_zero_point: int = 0")
    .Attr("output_scale: float")
    .Attr("output_zero_point: int = 0")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle in, v, u;
      ::tensorflow::shape_inference::DimensionHandle d;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &in));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &v));
      TF_RETURN_IF_ERROR(c->WithValue(c->Dim(v, 0), 2, &d));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &u));
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(v, 1), c->Dim(u, 0), &d));
      c->set_output(0, c->input(0));
      return ::tensorflow::OkStatus();
    })
    .Doc(R"doc(
Per-channel two-slope function of a uint8 tensor: PReLU, or a per-channel affine after a ReLU.

input: [..., C] uint8 with (input_scale, input_zero_point); slopes: [2, P] f32; bias: [P] f32,
where P is the product of the input's last k axes for some k >= 1 (P = C: per channel; Keras'
default PReLU has one slope per [H, W, C] position). With x the dequantized input and j the
index within those last axes, output = quantize(x · (x >= 0 ? slopes[0, j] : slopes[1, j]) +
bias[j]) with (output_scale, output_zero_point); docs/int8_numerics.md ("Per-channel
two-slope") gives the f32 operation sequence every CPU path follows bit for bit. CPU only.
)doc");

REGISTER_OP("Tfq8LayerNorm")
    .Input("input: uint8")
    .Input("gamma: float")
    .Input("beta: float")
    .Output("output: uint8")
    .Attr("input_scale: float")
    .Attr("input_zero_point: int = 0")
    .Attr("output_scale: float")
    .Attr("output_zero_point: int = 0")
    .Attr("epsilon: float = 0.001")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle in, v;
      ::tensorflow::shape_inference::DimensionHandle d;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &in));
      for (int i : {1, 2}) {
        TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 1, &v));
        if (c->RankKnown(in)) TF_RETURN_IF_ERROR(c->Merge(c->Dim(v, 0), c->Dim(in, -1), &d));
      }
      c->set_output(0, c->input(0));
      return ::tensorflow::OkStatus();
    })
    .Doc(R"doc(
Layer normalization of a uint8 tensor over its last axis (ConvNeXt's channels-last LayerNorm).

input: [..., C] uint8 with (input_scale, input_zero_point); gamma, beta: [C] f32. output[..., c] =
quantize((x − mean(x)) / sqrt(var(x) + epsilon) · gamma[c] + beta[c]) with (output_scale,
output_zero_point), mean and variance over the C values of each row of the dequantized input
(the input zero point cancels). The row statistics are exact integer sums of the codes; see
docs/int8_numerics.md ("Layer normalization") for the f32 operation sequence every CPU path
follows bit for bit. 1 ≤ C ≤ 65536.
)doc");

// ---------------------------------------------------------------------------------------------
// Attributes shared by Conv2D, DepthwiseConv2D and MatMul: the fused epilogue.
#define TFQ8_EPILOGUE_ATTRS                                         \
  Attr("input_scale: float")                                         \
      .Attr("input_zero_point: int = 0")                             \
      .Attr("Tbias: {float, int32} = DT_FLOAT")                      \
      .Attr("num_summand: int >= 0 = 0")                             \
      .Attr("summand_scale: float = 1.0")                            \
      .Attr("summand_zero_point: int = 0")                           \
      .Attr("activation: {'NONE', 'RELU', 'RELU6', 'CLIP'} = 'NONE'") \
      .Attr("clip_min: float = 0.0")                                 \
      .Attr("clip_max: float = 6.0")                                 \
      .Attr("out_type: {uint8, float, int32} = DT_UINT8")            \
      .Attr("output_scale: float = 1.0")                             \
      .Attr("output_zero_point: int = 0")

static const char kEpilogueDoc[] = R"doc(
input: NHWC uint8 activations with (input_scale, input_zero_point).
filter: int8 weights in -127..127.
bias: per-output-channel bias, f32 in real units or int32 in accumulator units.
filter_scale: f32 scales, shape [OC] (per channel) or [1] (per tensor).
summand: 0 or 1 uint8 tensors shaped like the output (the residual skip connection) with
  (summand_scale, summand_zero_point); added before the activation.
activation: NONE, RELU, RELU6 or CLIP(clip_min, clip_max), in real units.
out_type: uint8 (requantized to output_scale/output_zero_point: fused requantization), float
  (real values) or int32 (raw accumulator + quantized bias; no activation, no summand).
The arithmetic, rounding and saturation are specified in docs/int8_numerics.md.
)doc";

REGISTER_OP("Tfq8Conv2D")
    .Input("input: uint8")
    .Input("filter: int8")
    .Input("bias: Tbias")
    .Input("filter_scale: float")
    .Input("summand: num_summand * uint8")
    .Output("output: out_type")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("dilations: list(int) = [1, 1]")
    .Attr("explicit_paddings: list(int) = [0, 0, 0, 0]")
    .TFQ8_EPILOGUE_ATTRS
    .SetShapeFn([](InferenceContext* c) { return ConvShape(c, /*depthwise=*/false); })
    .Doc(std::string("INT8 2-D convolution, filter [KH, KW, IC, OC], with a fused epilogue.\n") +
         kEpilogueDoc);

REGISTER_OP("Tfq8GroupedConv2D")
    .Input("input: uint8")
    .Input("filter: int8")
    .Input("bias: Tbias")
    .Input("filter_scale: float")
    .Input("summand: num_summand * uint8")
    .Output("output: out_type")
    .Attr("groups: int >= 2")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("dilations: list(int) = [1, 1]")
    .Attr("explicit_paddings: list(int) = [0, 0, 0, 0]")
    .TFQ8_EPILOGUE_ATTRS
    .SetShapeFn([](InferenceContext* c) {
      return ConvShape(c, /*depthwise=*/false, /*grouped=*/true);
    })
    .Doc(std::string("INT8 grouped 2-D convolution (Keras Conv2D(groups=g)), filter [KH, KW, "
                     "IC / groups, OC]: output channel o reads input channels [k·IC/groups, "
                     "(k+1)·IC/groups), k = o / (OC/groups); each group is a Tfq8Conv2D of its "
                     "own, bit for bit. CPU only (TensorFlow places it on the CPU). Fused "
                     "epilogue.\n") +
         kEpilogueDoc);

REGISTER_OP("Tfq8DepthwiseConv2D")
    .Input("input: uint8")
    .Input("filter: int8")
    .Input("bias: Tbias")
    .Input("filter_scale: float")
    .Input("summand: num_summand * uint8")
    .Output("output: out_type")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("dilations: list(int) = [1, 1]")
    .Attr("explicit_paddings: list(int) = [0, 0, 0, 0]")
    .TFQ8_EPILOGUE_ATTRS
    .SetShapeFn([](InferenceContext* c) { return ConvShape(c, /*depthwise=*/true); })
    .Doc(std::string("INT8 depthwise convolution, filter [KH, KW, C, M] (output channel c*M+m, as "
                     "TF's DepthwiseConv2dNative), with a fused epilogue.\n") +
         kEpilogueDoc);

REGISTER_OP("Tfq8MatMul")
    .Input("input: uint8")
    .Input("filter: int8")
    .Input("bias: Tbias")
    .Input("filter_scale: float")
    .Input("summand: num_summand * uint8")
    .Output("output: out_type")
    .TFQ8_EPILOGUE_ATTRS
    .SetShapeFn(MatMulShape)
    .Doc(std::string("INT8 fully connected layer: input [N, K], filter [K, OC], fused epilogue.\n") +
         kEpilogueDoc);

// ---------------------------------------------------------------------------------------------
REGISTER_OP("Tfq8MaxPool")
    .Input("input: uint8")
    .Output("output: uint8")
    .Attr("ksize: list(int)")
    .Attr("strides: list(int)")
    .Attr("padding: {'VALID', 'SAME'}")
    .SetShapeFn(PoolShape)
    .Doc("Max pooling of uint8 NHWC with TF's padding semantics; scale unchanged.");

REGISTER_OP("Tfq8AvgPool")
    .Input("input: uint8")
    .Output("output: uint8")
    .Attr("ksize: list(int)")
    .Attr("strides: list(int)")
    .Attr("padding: {'VALID', 'SAME'}")
    .SetShapeFn(PoolShape)
    .Doc("Average pooling of uint8 NHWC; padded elements are not counted (as TF); "
         "q = (sum + n/2) / n; scale unchanged.");

REGISTER_OP("Tfq8Mean")
    .Input("input: uint8")
    .Output("output: uint8")
    .Attr("keep_dims: bool = false")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle in;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &in));
      bool keep;
      TF_RETURN_IF_ERROR(c->GetAttr("keep_dims", &keep));
      if (keep) {
        c->set_output(0, c->MakeShape({c->Dim(in, 0), 1, 1, c->Dim(in, 3)}));
      } else {
        c->set_output(0, c->MakeShape({c->Dim(in, 0), c->Dim(in, 3)}));
      }
      return ::tensorflow::OkStatus();
    })
    .Doc("Global average pool of uint8 NHWC over H and W: q = (sum + n/2) / n; scale unchanged.");

REGISTER_OP("Tfq8Concat")
    .Input("values: N * uint8")
    .Output("output: uint8")
    .Attr("N: int >= 1")
    .Attr("axis: int")
    .Attr("input_scales: list(float)")
    .Attr("input_zero_points: list(int)")
    .Attr("output_scale: float")
    .Attr("output_zero_point: int = 0")
    .SetShapeFn([](InferenceContext* c) {
      int axis;
      TF_RETURN_IF_ERROR(c->GetAttr("axis", &axis));
      ShapeHandle out = c->input(0);
      if (!c->RankKnown(out)) {
        c->set_output(0, c->UnknownShape());
        return ::tensorflow::OkStatus();
      }
      const int rank = c->Rank(out);
      if (axis < -rank || axis >= rank) {
        return ::tensorflow::errors::InvalidArgument("axis ", axis, " is out of range for rank ",
                                                     rank);
      }
      if (axis < 0) axis += rank;
      DimensionHandle sum = c->Dim(out, axis);
      ShapeHandle merged;
      TF_RETURN_IF_ERROR(c->ReplaceDim(out, axis, c->UnknownDim(), &merged));
      for (int i = 1; i < c->num_inputs(); ++i) {
        ShapeHandle in, in_free;
        TF_RETURN_IF_ERROR(c->WithRank(c->input(i), rank, &in));
        TF_RETURN_IF_ERROR(c->Add(sum, c->Dim(in, axis), &sum));
        TF_RETURN_IF_ERROR(c->ReplaceDim(in, axis, c->UnknownDim(), &in_free));
        TF_RETURN_IF_ERROR(c->Merge(merged, in_free, &merged));
      }
      out = merged;
      ShapeHandle result;
      TF_RETURN_IF_ERROR(c->ReplaceDim(out, axis, sum, &result));
      c->set_output(0, result);
      return ::tensorflow::OkStatus();
    })
    .Doc("Concatenates uint8 tensors, requantizing each to the common output scale.");

// Tfq8Add, Tfq8Mul: two inputs of one shape (no broadcasting), an output of that shape.
::tensorflow::Status SameShapeBinary(InferenceContext* c) {
  ShapeHandle out;
  TF_RETURN_IF_ERROR(c->Merge(c->input(0), c->input(1), &out));
  c->set_output(0, out);
  return ::tensorflow::OkStatus();
}

REGISTER_OP("Tfq8Add")
    .Input("a: uint8")
    .Input("b: uint8")
    .Output("output: uint8")
    .Attr("a_scale: float")
    .Attr("a_zero_point: int = 0")
    .Attr("b_scale: float")
    .Attr("b_zero_point: int = 0")
    .Attr("output_scale: float")
    .Attr("output_zero_point: int = 0")
    .Attr("activation: {'NONE', 'RELU', 'RELU6'} = 'NONE'")
    .SetShapeFn(SameShapeBinary)
    .Doc("Adds two uint8 tensors of the same shape with their own scales, optional ReLU/ReLU6, "
         "requantized to the output scale.");

REGISTER_OP("Tfq8Mul")
    .Input("a: uint8")
    .Input("b: uint8")
    .Output("output: uint8")
    .Attr("a_scale: float")
    .Attr("a_zero_point: int = 0")
    .Attr("b_scale: float")
    .Attr("b_zero_point: int = 0")
    .Attr("output_scale: float")
    .Attr("output_zero_point: int = 0")
    .SetShapeFn(SameShapeBinary)
    .Doc("Multiplies two uint8 tensors of the same shape elementwise (gated activations: "
         "tanh(x)·sigmoid(y), GLU), each with its own scale, requantized to the output scale. "
         "CPU only.");

}  // namespace tfq8
