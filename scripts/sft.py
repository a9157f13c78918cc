"""QLoRA/LoRA SFT of a VLM on ChartQA (notebook 03) as a command-line recipe for `accelerate launch`.

    accelerate launch --config_file configs/multi_gpu.yaml scripts/sft.py --output_dir runs/sft
COOKBOOK_TINY=1 runs it offline on the tiny model and data samples.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from datasets import load_dataset
from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

from helpers.data import format_dataset
from helpers.recipes import load_vlm, parse, train_and_save
from helpers.tiny import resolve
from helpers.vision import CHARTQA_MAX_PIXELS

# The notebook's recipe; every value can be overridden on the command line or in a --config YAML.
DEFAULTS = dict(model_name_or_path="Qwen/Qwen2-VL-7B-Instruct", dtype="bfloat16", load_in_4bit=True,
                bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True, use_peft=True, lora_r=8, lora_alpha=16,
                lora_dropout=0.05, lora_target_modules=["q_proj", "v_proj"], num_train_epochs=1,
                per_device_train_batch_size=4, gradient_accumulation_steps=8, learning_rate=2e-4,
                lr_scheduler_type="cosine", warmup_steps=0.03, activation_checkpointing=True, bf16=True,
                max_length=None, eval_strategy="steps", eval_steps=20, save_strategy="steps", save_steps=20,
                save_total_limit=2, logging_steps=5, report_to="trackio", project="vlm-cookbook")


@dataclass
class RecipeArguments:
    """Data and image settings of the recipe."""

    dataset_name: str = "HuggingFaceM4/ChartQA"
    dataset_train_split: str = "train[:10%]"
    dataset_test_split: str = "val[:10%]"
    formatter: str = field(default="chartqa", metadata={"help": "helpers.data formatter: chartqa or product"})
    max_pixels: int = CHARTQA_MAX_PIXELS


def main(recipe: RecipeArguments, args: SFTConfig, model_args: ModelConfig) -> None:
    """Format, load, train (resuming if a checkpoint exists), save the adapter once."""
    splits = load_dataset(resolve(recipe.dataset_name), split=[recipe.dataset_train_split, recipe.dataset_test_split])
    train, evaluation = (format_dataset(s, recipe.formatter)[0] for s in splits)
    model, processor = load_vlm(model_args, recipe.max_pixels)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=evaluation,
                         processing_class=processor, peft_config=get_peft_config(model_args))
    train_and_save(trainer)


if __name__ == "__main__":
    main(*parse((RecipeArguments, SFTConfig, ModelConfig), DEFAULTS, sys.argv[1:]))
