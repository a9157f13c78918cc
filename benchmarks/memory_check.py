"""Predicted vs measured peak memory of real TRL training steps, per recipe setting (helpers.budget vs the allocator).

On a GPU: real-size random-weight models built from the shipped configs (no download), `torch.cuda.max_memory_allocated`.
With --tiny, on CPU: the tiny models, peak bytes from the torch profiler's allocation events plus the loaded weights.
Usage: python benchmarks/memory_check.py [--tiny] [--only NAME ...]   -> benchmarks/results/memory-<device>.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

from helpers.activations import cpu_peak
from helpers.budget import estimate_training_memory
from helpers.memory import GIB, load_config, model_bytes
from helpers.tiny import TINY_MODELS, tiny_model_path

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
TOKEN_FIELDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id", "bos_token_id",
                "eos_token_id", "pad_token_id")


def rows(n: int, size: tuple[int, int], dpo: bool) -> list[dict]:
    """`n` formatted rows with a noise image of `size`: ChartQA-like prompt/completion, or RLAIF-V-like preferences."""
    from PIL import Image

    from helpers.data import format_chartqa, format_rlaif_v

    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        pixels = torch.randint(0, 256, (size[0], size[1], 3), generator=g, dtype=torch.uint8).numpy()
        image = Image.fromarray(pixels)
        question = f"What is the value of the tallest bar in the chart for the year {2000 + i}?"
        if dpo:
            out.append(format_rlaif_v({"image": image, "question": question, "chosen": "A red bar of 42 units. " * 4,
                                       "rejected": "A blue bar with a cat on it. " * 4, "origin_dataset": "x",
                                       "origin_split": "x", "idx": i, "image_path": "x", "ds_name": "x"}))
        else:
            out.append(format_chartqa({"image": image, "query": question, "label": ["42"], "human_or_machine": 0}))
    return out


def load(hub_id: str, method: str, tiny: bool, workdir: Path):
    """(model, processor, config): tiny checkpoint, or real config + random weights with the tiny processor's ids."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    tiny_path = tiny_model_path(TINY_MODELS[hub_id])
    processor = AutoProcessor.from_pretrained(tiny_path, **({"do_image_splitting": False} if "idefics" in hub_id else {}))
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16) if method == "qlora" else None
    if tiny:
        path = tiny_path
    else:  # the real architecture; token ids follow the tiny tokenizer, which the processor uses
        config, tiny_config = load_config(hub_id), load_config(tiny_path / "config.json")
        for cfg, src in ((config, tiny_config), (config.get_text_config(), tiny_config.get_text_config())):
            for field in TOKEN_FIELDS:
                if hasattr(src, field):
                    setattr(cfg, field, getattr(src, field))
        with torch.device("cuda"):
            model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
        if quant is None:
            return model, processor, config
        path = workdir / "random-weights"
        model.save_pretrained(path)
        del model
        torch.cuda.empty_cache()
    device_map = {"": 0} if torch.cuda.is_available() else None
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.bfloat16, quantization_config=quant,
                                                        device_map=device_map)
    return model, processor, model.config


def run_setting(setting: tuple, tiny: bool) -> dict:
    """Run 2 training steps of one setting through TRL's trainer; return predicted and measured peak bytes."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    name, hub_id, method, targets, batch, size, dpo = setting
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=targets)
    with tempfile.TemporaryDirectory() as tmp:
        model, processor, config = load(hub_id, method, tiny, Path(tmp))
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
    from helpers.budget import image_tokens

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models on CPU (what CI runs)")
    parser.add_argument("--only", nargs="*", help="setting names to run (default: all)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if args.tiny:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    elif not torch.cuda.is_available():
        raise SystemExit("no GPU: run with --tiny, or on the GPU runner")
    results = []
    for setting in SETTINGS:
        if args.only and setting[0] not in args.only:
            continue
        r = run_setting(setting, args.tiny)
        results.append(r)
        print(f"{r['name']:18} predicted {r['predicted_bytes'] / GIB:8.3f} GiB  measured "
              f"{r['measured_bytes'] / GIB:8.3f} GiB  error {100 * r['relative_error']:+6.1f}%", flush=True)
    import peft
    import transformers
    import trl

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu-{platform.machine()}"
    report = {"device": device, "tiny": args.tiny, "date": datetime.date.today().isoformat(),
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "trl": trl.__version__, "peft": peft.__version__},
              "settings": results, "memory_relative_errors": [r["relative_error"] for r in results]}
    slug = ("cpu-tiny" if args.tiny else device.lower().replace(" ", "-"))
    out = Path(args.out) / f"memory-{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print("saved", out)


if __name__ == "__main__":
    main()
