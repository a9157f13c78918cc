"""Training speed of the seed recipes vs the cookbook's, through the real TRL trainers, at real size (random weights).

SFT: Qwen2-VL-7B-Instruct on ChartQA-like rows (one 560x840 image = 600 image tokens, ~60 text tokens per sample).
DPO: idefics2-8b on RLAIF-V-like preference rows (the same image: 2,400 SigLIP patches, 64 perceiver tokens).
Reports samples/s, tokens/s (non-padding tokens the language model reads, chosen + rejected for DPO), peak memory and
MFU (benchmarks/flops.py model FLOPs / the GPU's dense bf16 peak). With --tiny: the tiny models on CPU (what CI runs; the
figures then say nothing about GPUs).
Usage: python benchmarks/train_throughput.py --method sft|dpo [--tiny] [--steps N] [--only NAME ...]
    -> benchmarks/results/throughput-<method>-<device>.json
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback

from helpers.weights import GIB
from helpers.training import drop_input_grad_hooks
from helpers.vision import image_tokens

from bench import arguments, device_name, environment, load, require_device, rows, save_report
from flops import StepShape, mfu, training_flops

MODELS = {"sft": "Qwen/Qwen2-VL-7B-Instruct", "dpo": "HuggingFaceM4/idefics2-8b"}
IMAGE = (560, 840)  # height, width: 20 x 30 Qwen2-VL tokens = 600; 40 x 60 = 2,400 patches for both vision towers
TINY_IMAGE = (168, 252)  # CPU attention over 2,400 patches would dominate a tiny run
FITS_24GB = 22 * GIB  # reserved by PyTorch's allocator on a 24 GB card, leaving room for the CUDA context


@dataclass
class Recipe:
    """One way to train: what the seed did, or what the cookbook recommends (and candidates measured to choose it)."""

    name: str
    about: str
    method: str  # "qlora" (NF4 base, bf16 compute) or "lora" (bf16 base)
    batch: int
    checkpointing: bool
    optim: str = "adamw_torch"
    input_grads: bool = True  # TRL's enable_input_require_grads hook (with checkpointing); False removes it
    workers: int = 0  # dataloader processes (image preprocessing runs there)


RECIPES = {
    "sft": [
        Recipe("seed", "seed: 4-bit NF4 QLoRA q/v r=8, batch 4, checkpointing", "qlora", 4, True),
        Recipe("a100-80gb", "bf16 LoRA q/v r=8, batch 8, no checkpointing, fused AdamW, 4 loader workers",
               "lora", 8, False, "adamw_torch_fused", workers=4),
        Recipe("24gb", "bf16 LoRA q/v r=8, batch 8, checkpointing without the input-grad hook, fused AdamW",
               "lora", 8, True, "adamw_torch_fused", input_grads=False, workers=4),
        Recipe("candidate-lora-b16", "bf16 LoRA, batch 16, no checkpointing (predicted 74 GiB)", "lora", 16, False,
               "adamw_torch_fused", workers=4),
        Recipe("candidate-qlora-b8", "QLoRA, batch 8, checkpointing without the hook", "qlora", 8, True,
               "adamw_torch_fused", input_grads=False, workers=4),
    ],
    "dpo": [
        Recipe("seed", "seed: bf16 LoRA all-linear r=8, batch 2, checkpointing", "lora", 2, True),
        Recipe("a100-80gb", "bf16 LoRA all-linear, batch 2, no checkpointing, fused AdamW, 4 loader workers",
               "lora", 2, False, "adamw_torch_fused", workers=4),
        Recipe("candidate-b8-ckpt", "batch 8, checkpointing without the input-grad hook, fused AdamW", "lora", 8,
               True, "adamw_torch_fused", input_grads=False, workers=4),
    ],
}


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step, the GPU's queue drained at both ends."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def _sync(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = self._sync()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(self._sync() - self.start)


def run_recipe(method: str, recipe: Recipe, tiny: bool, steps: int, warmup: int, workdir: Path,
               image: tuple[int, int] = IMAGE) -> dict:
    """Train `warmup + steps` steps; return throughput, memory and MFU of the last `steps`."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    dpo = method == "dpo"
    hub_id = MODELS[method]
    lora = (LoraConfig(r=8, lora_alpha=8, lora_dropout=0.05, target_modules="all-linear") if dpo else
            LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]))
    model, processor, config = load(hub_id, recipe.method, tiny, workdir)
    cuda = torch.cuda.is_available()
    args = (DPOConfig if dpo else SFTConfig)(
        output_dir=str(workdir / recipe.name), max_steps=warmup + steps, per_device_train_batch_size=recipe.batch,
        activation_checkpointing=recipe.checkpointing, optim=recipe.optim, bf16=True, max_length=None,
        report_to="none", save_strategy="no", logging_steps=1, use_cpu=not cuda, seed=0,
        dataloader_num_workers=recipe.workers if cuda else 0, learning_rate=1e-5)
    trainer = (DPOTrainer if dpo else SFTTrainer)(
        model=model, args=args, train_dataset=Dataset.from_list(rows(recipe.batch * (warmup + steps), image, dpo)),
        processing_class=processor, peft_config=lora)
    if not recipe.input_grads:  # non-reentrant checkpointing needs no input that requires grad
        drop_input_grad_hooks(trainer.model)
    batch = next(iter(trainer.get_train_dataloader()))
    n_rows, seq = batch["input_ids"].shape  # DPO: chosen and rejected rows, concatenated
    mask = batch["completion_mask"] if "completion_mask" in batch else batch["labels"] != -100
    # TRL's chunked LM head scores the labelled positions on CUDA (Triton), every shifted position elsewhere
    scored = int(mask.sum()) if cuda else n_rows * (seq - 1)
    patches = image_tokens(config, *image)[1]
    flops = training_flops(config, lora, StepShape(n_rows, seq, n_rows, patches, scored), reference=dpo)
    timer = StepTimer()
    trainer.add_callback(timer)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    step = sum(timer.times[warmup:]) / steps
    tokens = int(batch["attention_mask"].sum())
    return {**asdict(recipe), "rows_per_step": int(n_rows), "padded_length": int(seq), "tokens_per_step": tokens,
            "step_s": step, "samples_per_s": recipe.batch / step, "tokens_per_s": tokens / step,
            "model_flops_per_step": flops.total, "mfu": mfu(flops.total / step, device_name()),
            "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB if cuda else None,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB if cuda else None}


def summarise(results: list[dict], tiny: bool) -> dict:
    """Speed-ups against the seed recipe (tokens/s) and the goals (judged on GPUs only)."""
    seed = next(r for r in results if r["name"] == "seed")
    speedup = {r["name"]: r["tokens_per_s"] / seed["tokens_per_s"] for r in results if "tokens_per_s" in r}
    fits = {r["name"]: r["peak_reserved_gib"] is not None and r["peak_reserved_gib"] * GIB <= FITS_24GB
            for r in results if "tokens_per_s" in r}
    if tiny:
        return {"speedup_vs_seed_recipe": speedup, "goals": "not judged: tiny models on CPU say nothing about GPUs"}
    return {"speedup_vs_seed_recipe": speedup, "fits_24gb": fits,
            "goals": {"a100-80gb >= 2x seed": speedup.get("a100-80gb", 0) >= 2,
                      "24gb >= 1.5x seed and fits 24 GB": speedup.get("24gb", 0) >= 1.5 and fits.get("24gb", False)}}


def main() -> None:
    """Run the recipes of one method, print the table, save the JSON."""
    parser = arguments(__doc__)
    parser.add_argument("--method", choices=list(RECIPES), required=True)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 8 on GPU, 2 with --tiny)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="recipe names (default: all; seed always runs)")
    args = parser.parse_args()
    require_device(args.tiny)
    steps = args.steps or (2 if args.tiny else 8)
    image = TINY_IMAGE if args.tiny else IMAGE
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in RECIPES[args.method]:
            if args.only and recipe.name != "seed" and recipe.name not in args.only:
                continue
            try:
                r = run_recipe(args.method, recipe, args.tiny, steps, args.warmup, Path(tmp), image)
            except torch.OutOfMemoryError:
                r = {**asdict(recipe), "error": "out of memory"}
            gc.collect()  # an out-of-memory traceback held the model until here
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            results.append(r)
            if "error" in r:
                print(f"{recipe.name:20} out of memory", flush=True)
                continue
            peak = f"{r['peak_reserved_gib']:6.1f} GiB" if r["peak_reserved_gib"] is not None else "     -    "
            util = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "   - "
            print(f"{recipe.name:20} {r['samples_per_s']:8.2f} samples/s {r['tokens_per_s']:10.0f} tokens/s "
                  f"peak {peak}  MFU {util}", flush=True)
    report = {**environment(), "tiny": args.tiny, "method": args.method, "model": MODELS[args.method],
              "image_size": list(image), "timed_steps": steps, "warmup_steps": args.warmup, "recipes": results,
              **summarise(results, args.tiny)}
    print({k: round(v, 2) for k, v in report["speedup_vs_seed_recipe"].items()}, report["goals"])
    save_report(report, f"throughput-{args.method}", args.out, args.tiny)


if __name__ == "__main__":
    main()
