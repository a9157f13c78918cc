"""Greedy generation speed, one prompt at a time vs batched (helpers.generation, left padding), at real size.

Qwen2-VL-7B-Instruct in bf16 with random weights (notebook 05's model), ChartQA-like prompts with a 560x840 chart
(600 image tokens). Random weights never stop early, so every prompt generates `--new-tokens` tokens: the speed-up is
the pipeline's, not a shorter output's. With --tiny: the tiny model on CPU (what CI runs).
Usage: python benchmarks/eval_throughput.py [--tiny] [--prompts N] [--batch-sizes 1 8 32]
    -> benchmarks/results/eval-<device>.json
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from helpers.generation import generate_ids

from bench import arguments, environment, load, require_device, rows, save_report

MODEL = "Qwen/Qwen2-VL-7B-Instruct"
IMAGE, TINY_IMAGE = (560, 840), (168, 252)


def timed(fn):
    """(result, seconds) of `fn()`, the GPU's queue drained at both ends."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    """Generate for the same prompts at each batch size; print and save prompts/s, tokens/s and speed-ups."""
    parser = arguments(__doc__)
    parser.add_argument("--prompts", type=int, default=None, help="default 64 on GPU, 8 with --tiny")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 1 8 32 (tiny: 1 4)")
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()
    require_device(args.tiny)
    n = args.prompts or (8 if args.tiny else 64)
    sizes = args.batch_sizes or ([1, 4] if args.tiny else [1, 8, 32])
    data = rows(n, TINY_IMAGE if args.tiny else IMAGE, dpo=False)
    prompts, images = [r["prompt"] for r in data], [r["images"] for r in data]
    with tempfile.TemporaryDirectory() as tmp:
        model, processor, _ = load(MODEL, "lora", args.tiny, Path(tmp))  # "lora": the bf16 base, no quantisation
        generate_ids(model, processor, prompts[:2], images[:2], args.new_tokens, batch_size=2)  # warm-up
        results, answers = [], {}
        for size in sizes:
            ids, seconds = timed(lambda: generate_ids(model, processor, prompts, images, args.new_tokens, size))
            answers[size] = ids
            new = sum(len(i) for i in ids)
            results.append({"batch_size": size, "seconds": seconds, "prompts_per_s": n / seconds,
                            "new_tokens": new, "new_tokens_per_s": new / seconds,
                            "same_answers_as_batch_1": sum(a == b for a, b in zip(ids, answers[sizes[0]])) / n,
                            "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30
                            if torch.cuda.is_available() else None})
            print(f"batch {size:3d}: {n / seconds:7.2f} prompts/s {new / seconds:8.1f} new tokens/s "
                  f"({seconds:.1f} s for {n} prompts)", flush=True)
    one = results[0]["prompts_per_s"]
    report = {**environment(), "tiny": args.tiny, "model": MODEL, "prompts": n, "new_tokens": args.new_tokens,
              "dtype": "bfloat16", "results": results,
              "speedup_vs_one_by_one": {r["batch_size"]: r["prompts_per_s"] / one for r in results}}
    print({k: round(v, 2) for k, v in report["speedup_vs_one_by_one"].items()})
    save_report(report, "eval", args.out, args.tiny)


if __name__ == "__main__":
    main()
