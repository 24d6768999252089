"""Prediction parity of a run's model across devices and exported files, on the split training evaluated.

    python scripts/check_parity.py RUN [--device cuda] [--export model.onnx ...]

The reference is the run's best.pt on the CPU (what `nntrain eval` reports). Each other source (the
checkpoint on --device, each exported .onnx on --device: onnxruntime's CUDA provider when it has one)
predicts the same normalized test inputs; prints top-1 agreement and the largest probability difference.
Exit 1 if any top-1 agreement is below --min-agree (default 0.99) or a probability differs by more than
--max-dp (default 1e-3).
"""

from __future__ import annotations

import sys

import numpy as np
from benchlib import arguments


def main() -> int:
    ap = arguments(__doc__, reps=None, device="cpu", threads=False)
    ap.add_argument("run", help="a run directory or .pt checkpoint")
    ap.add_argument("--export", nargs="*", default=[], help="exported .onnx files of that run")
    ap.add_argument("--min-agree", type=float, default=0.99)
    ap.add_argument("--max-dp", type=float, default=1e-3)
    args = ap.parse_args()

    import torch

    from nntrain.deploy.source import open_source
    from nntrain.pipeline.reopen import read_checkpoint, split_batches

    _, ckpt, _ = read_checkpoint(args.run)
    split, n, batches = split_batches(ckpt, 512)
    x = torch.cat([xb for xb, _ in batches])
    ref = open_source(args.run, "cpu").probabilities(x)
    top = ref.argmax(1)
    ok = True
    sources = [(f"best.pt on {args.device}", args.run), *((f"{e} on {args.device}", e) for e in args.export)]
    for label, source in sources:
        p = open_source(source, args.device).probabilities(x)
        agree, dp = float((p.argmax(1) == top).mean()), float(np.abs(p - ref).max())
        good = agree >= args.min_agree and dp <= args.max_dp
        ok &= good
        print(
            f"{label:40s} vs best.pt on cpu, {n} {split} inputs: top-1 agreement {agree:.4f}, max |dp| {dp:.2e}"
            f"{'' if good else '  <-- FAIL'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
