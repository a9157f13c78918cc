"""Predicted vs measured peak memory of real TRL training steps, per recipe setting (helpers.budget vs the allocator).

On a GPU: real-size random-weight models built from the shipped configs (no download), `torch.cuda.max_memory_allocated`.
With --tiny, on CPU: the tiny models, peak bytes from the torch profiler's allocation events plus the loaded weights.
Usage: python benchmarks/memory_check.py [--tiny] [--only NAME ...]   -> benchmarks/results/memory-<device>.json
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from helpers.activations import cpu_peak
from helpers.budget import estimate_training_memory
from helpers.weights import GIB, load_config, model_bytes

from bench import arguments, environment, load, require_device, rows, save_report

QV, ALL = ["q_proj", "v_proj"], "all-linear"
# name, model, method, LoRA targets, per-device batch, image (height, width), DPO
SETTINGS = [
    ("sft-qlora-b1-800", "Qwen/Qwen2-VL-7B-Instruct", "qlora", QV, 1, (600, 800), False),
    ("sft-qlora-b4-800", "Qwen/Qwen2-VL-7B-Instruct", "qlora", QV, 4, (600, 800), False),
    ("sft-qlora-b4-400", "Qwen/Qwen2-VL-7B-Instruct", "qlora", QV, 4, (300, 400), False),
    ("sft-lora-b1-800", "Qwen/Qwen2-VL-7B-Instruct", "lora", QV, 1, (600, 800), False),
    ("sft-lora-b4-800", "Qwen/Qwen2-VL-7B-Instruct", "lora", QV, 4, (600, 800), False),
    ("dpo-lora-b1-800", "HuggingFaceM4/idefics2-8b", "lora", ALL, 1, (600, 800), True),
    ("dpo-lora-b2-800", "HuggingFaceM4/idefics2-8b", "lora", ALL, 2, (600, 800), True),
    ("dpo-lora-b2-400", "HuggingFaceM4/idefics2-8b", "lora", ALL, 2, (300, 400), True),
]


def run_setting(setting: tuple, tiny: bool, workdir: Path) -> dict:
    """Run 2 training steps of one setting through TRL's trainer; return predicted and measured peak bytes."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    name, hub_id, method, targets, batch, size, dpo = setting
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=targets)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:  # the random 4-bit checkpoint stays in workdir, reused
        model, processor, config = load(hub_id, method, tiny, workdir)
        data = Dataset.from_list(rows(2 * batch, size, dpo))
        common = dict(output_dir=tmp, max_steps=2, per_device_train_batch_size=batch, gradient_checkpointing=True,
                      bf16=True, max_length=None, report_to="none", save_strategy="no", logging_steps=1,
                      use_cpu=not torch.cuda.is_available(), seed=0)
        args = DPOConfig(**common) if dpo else SFTConfig(**common)
        trainer = (DPOTrainer if dpo else SFTTrainer)(model=model, args=args, train_dataset=data,
                                                     processing_class=processor, peft_config=lora)
        batch_inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        rows_, seq = batch_inputs["input_ids"].shape  # DPO: chosen and rejected rows, concatenated
        mask = batch_inputs["completion_mask"] if "completion_mask" in batch_inputs else batch_inputs["labels"] != -100
        trainer.create_optimizer_and_scheduler(num_training_steps=2)
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # set by train() in transformers 5

        def steps() -> None:  # what one optimizer step does, without the host-side data pipeline
            for _ in range(2):
                trainer.training_step(trainer.model, dict(batch_inputs))
                trainer.optimizer.step()
                trainer.optimizer.zero_grad(set_to_none=True)

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            steps()
            measured = torch.cuda.max_memory_allocated()
        else:  # weights and the batch are allocated before; the profiler sees what the steps add on top
            held = sum(v.untyped_storage().nbytes() for v in batch_inputs.values() if torch.is_tensor(v))
            measured = model_bytes(trainer.model) + held + cpu_peak(steps)
    from helpers.vision import image_tokens

    img, _ = image_tokens(load_config(hub_id) if not tiny else config, *size)
    # TRL's fused LM head scores only labelled tokens on CUDA (Triton), every position elsewhere
    scored = seq if not torch.cuda.is_available() else -(-int(mask.sum()) // rows_)
    est = estimate_training_memory(config if tiny else hub_id, method=method, lora_config=lora, batch_size=batch,
                                   text_tokens=max(1, seq - img), image_size=size, scored_tokens=scored, dpo=dpo)
    return {"name": name, "model": hub_id, "method": method, "batch_size": batch, "image_size": list(size),
            "dpo": dpo, "sequence_tokens": int(seq), "predicted_bytes": est.peak, "measured_bytes": int(measured),
            "relative_error": (est.peak - measured) / measured, "predicted_gib": est.gib()}


def main() -> None:
    """Run the settings, print the table, save the JSON."""
    parser = arguments(__doc__)
    parser.add_argument("--only", nargs="*", help="setting names to run (default: all)")
    args = parser.parse_args()
    require_device(args.tiny)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for setting in SETTINGS:
            if args.only and setting[0] not in args.only:
                continue
            r = run_setting(setting, args.tiny, Path(workdir))
            results.append(r)
            print(f"{r['name']:18} predicted {r['predicted_bytes'] / GIB:8.3f} GiB  measured "
                  f"{r['measured_bytes'] / GIB:8.3f} GiB  error {100 * r['relative_error']:+6.1f}%", flush=True)
    report = {**environment(), "tiny": args.tiny, "settings": results,
              "memory_relative_errors": {r["name"]: r["relative_error"] for r in results}}
    save_report(report, "memory", args.out, args.tiny)


if __name__ == "__main__":
    main()
