"""One engine × one model in a process of its own (run by bench/models.py):

    python bench/peers/worker.py --engine tflite --model mobilenetv2 --batches 1 16 \
        --reps 20 --warmup 5 --calib 32 --out /tmp/x.json

Writes a JSON list of result rows (one per batch; ORT writes QOperator and QDQ rows).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peer_common as C  # noqa: E402

ENGINES = ("tf_fp32", "tf_fp32_onednn", "tfq8", "tflite", "ort", "inc_tfkeras", "inc_keras3")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--engine", required=True, choices=ENGINES)
    p.add_argument("--model", required=True, choices=sorted(C.IMAGE))
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--graph-time-batches", type=int, nargs="*", default=[1])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--calib", type=int, default=32)
    p.add_argument("--min-seconds", type=float, default=0.0,
                   help="keep timing past --reps until this many seconds have passed")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.engine in ("tf_fp32", "tf_fp32_onednn", "tfq8"):
        import peer_tf as mod
    elif args.engine == "tflite":
        import peer_tflite as mod
    elif args.engine == "ort":
        import peer_onnxruntime as mod
    else:
        import peer_inc as mod
    rows = mod.run(args, args.engine)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1, default=str)


if __name__ == "__main__":
    main()
