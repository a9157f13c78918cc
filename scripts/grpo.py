"""GRPO of a VLM on ChartQA with verifiable rewards (notebook 06) as a command-line recipe for `accelerate launch`.

    accelerate launch --config_file configs/single_gpu.yaml scripts/grpo.py --sft_adapter runs/sft/adapter \
        --output_dir runs/grpo
COOKBOOK_TINY=1 runs it offline on the tiny model and data samples.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from datasets import Dataset, load_dataset
from peft import PeftModel
from trl import GRPOConfig, GRPOTrainer, ModelConfig, get_peft_config

from helpers.data import format_dataset
from helpers.recipes import load_vlm, parse, train_and_save
from helpers.rewards import correctness_reward, format_reward
from helpers.tiny import resolve
from helpers.vision import CHARTQA_MAX_PIXELS

# The notebook's recipe; every value can be overridden on the command line or in a --config YAML.
DEFAULTS = dict(model_name_or_path="Qwen/Qwen2-VL-7B-Instruct", dtype="bfloat16", use_peft=True, lora_r=8,
                lora_alpha=16, lora_dropout=0.0, lora_target_modules=["q_proj", "v_proj"], num_train_epochs=1,
                per_device_train_batch_size=8, gradient_accumulation_steps=8, num_generations=8,
                max_completion_length=16, temperature=1.0, beta=0.04, loss_type="dapo",
                importance_sampling_level="token", scale_rewards="group", reward_weights=[1.0, 0.5],
                learning_rate=1e-5, lr_scheduler_type="constant_with_warmup", warmup_steps=0.05,
                activation_checkpointing=True, bf16=True, logging_steps=1, save_strategy="steps", save_steps=20,
                save_total_limit=2, report_to="trackio", project="vlm-cookbook")


@dataclass
class RecipeArguments:
    """Data, image and starting-point settings of the recipe."""

    dataset_name: str = "HuggingFaceM4/ChartQA"
    dataset_train_split: str = "train[10%:12%]"
    max_pixels: int = CHARTQA_MAX_PIXELS
    sft_adapter: str | None = field(default=None, metadata={
        "help": "notebook 03's SFT adapter, merged into the base first so that the KL reference is the SFT model; "
                "without it GRPO starts from the base"})


def grpo_rows(raw: Dataset) -> Dataset:
    """ChartQA rows -> GRPO rows: the prompt and images of notebook 01, and the gold `label` list for the rewards."""
    rows, bad = format_dataset(raw, "chartqa")
    dropped = {i for i, _ in bad}
    return rows.remove_columns("completion").add_column(
        "label", [labels for i, labels in enumerate(raw["label"]) if i not in dropped])


def main(recipe: RecipeArguments, args: GRPOConfig, model_args: ModelConfig) -> None:
    """Format, load (merging the SFT adapter if given), train with both rewards (resuming), save the adapter once."""
    train = grpo_rows(load_dataset(resolve(recipe.dataset_name), split=recipe.dataset_train_split))
    model, processor = load_vlm(model_args, recipe.max_pixels)
    if recipe.sft_adapter:
        model = PeftModel.from_pretrained(model, recipe.sft_adapter).merge_and_unload()
    trainer = GRPOTrainer(model=model, reward_funcs=[correctness_reward, format_reward], args=args,
                          train_dataset=train, processing_class=processor, peft_config=get_peft_config(model_args))
    train_and_save(trainer)


if __name__ == "__main__":
    main(*parse((RecipeArguments, GRPOConfig, ModelConfig), DEFAULTS, sys.argv[1:]))
