"""Graph passes. Each pass: GraphDef → GraphDef, pure, named, individually testable.

    from tfq8.passes import default_pipeline, PassContext
    result = default_pipeline(disable={"move_strides"}).run(frozen.graph_def,
                                                             PassContext.for_model(frozen))
    print(result.summary(before=frozen.graph_def))

FP32 passes, in pipeline order: upcast_half → dedupe → conv1d → dilated_conv → transposed_conv →
grouped_conv → dense_as_conv → pad_into_conv → fold_batchnorm → move_strides →
fuse_activations → equalize → pair_channels
(equalize needs calibration data, which tfq8.quantize gives it; elsewhere it changes nothing;
pair_channels runs only for QuantConfig(u8_safe_pairs=True); upcast_half, which widens a
mixed-precision model's float16 / bfloat16 ops to float32, only in tfq8.quantize).
"""
from tfq8.passes.pipeline import (MAC_RULES, MacReport, Note, Pass, PassContext, PassError,
                                  PassResult, Pipeline, PipelineResult, count_macs,
                                  default_pipeline)
from tfq8.passes.fold_batchnorm import FoldBatchNorm
from tfq8.passes.move_strides import MoveStrides
from tfq8.passes.fuse_activations import FuseActivations, FusionGroup, fusion_groups
from tfq8.passes.grouped_conv import GroupedConv
from tfq8.passes.dense_conv import DenseAsConv
from tfq8.passes.dilated_conv import DilatedConv
from tfq8.passes.conv1d import Conv1DAs2D
from tfq8.passes.dedupe import Dedupe
from tfq8.passes.pad_into_conv import PadIntoConv
from tfq8.passes.transposed_conv import TransposedConv
from tfq8.passes.upcast_half import UpcastHalf

__all__ = ["Conv1DAs2D", "Dedupe", "DenseAsConv", "DilatedConv", "FoldBatchNorm",
           "FuseActivations", "FusionGroup", "GroupedConv", "MAC_RULES", "MacReport", "MoveStrides",
           "Note", "PadIntoConv", "Pass", "PassContext", "PassError", "PassResult", "Pipeline", "PipelineResult", "TransposedConv", "UpcastHalf",
           "count_macs", "default_pipeline", "fusion_groups"]
