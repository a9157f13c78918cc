"""DPO with LoRA of a VLM on RLAIF-V (notebook 04) as a command-line recipe for `accelerate launch`.

    accelerate launch --config_file configs/multi_gpu.yaml scripts/dpo.py --output_dir runs/dpo \
        --per_device_train_batch_size 2 --gradient_accumulation_steps 32 --bf16 --gradient_checkpointing \
        --use_peft --lora_target_modules all-linear
`tools/tiny-env accelerate launch ...` runs it offline on tiny stand-ins of the model and data set.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from trl import DPOConfig, DPOTrainer, ModelConfig, get_peft_config

from helpers.vision import CHARTQA_MAX_PIXELS

from recipes import (check_arguments, format_splits, keep_token_off_disk, load_model, load_processor, load_splits,
                     parse, train_and_save)

# The notebook's recipe; every value can be overridden on the command line or in a --config YAML.
DEFAULTS = dict(model_name_or_path="HuggingFaceM4/idefics2-8b", dtype="bfloat16", use_peft=True, lora_r=8,
                lora_alpha=8, lora_dropout=0.05, lora_target_modules=["all-linear"], num_train_epochs=1,
                per_device_train_batch_size=4, gradient_accumulation_steps=16, learning_rate=5e-5,
                lr_scheduler_type="cosine", warmup_steps=0.1, beta=0.1, max_length=None,
                activation_checkpointing=True, bf16=True, logging_steps=5, save_strategy="steps", save_steps=20,
                save_total_limit=2, report_to="trackio", project="vlm-cookbook", seed=0)


@dataclass
class RecipeArguments:
    """Data and image settings of the recipe."""

    dataset_name: str = "openbmb/RLAIF-V-Dataset"
    dataset_train_split: str = "train[:5%]"
    max_pixels: int = CHARTQA_MAX_PIXELS  # Qwen2-VL only; Idefics2 turns image splitting off
    max_tokens: int = field(default=2048, metadata={"help": "pairs whose prompt + longer answer exceeds this (text + "
                                                            "image tokens) are dropped and reported"})
    max_dropped_fraction: float = field(default=0.05, metadata={
        "help": "fail when more of the train split is unusable (default 5 %: a few broken pairs are normal, more "
                "means wrong columns)"})


def main(recipe: RecipeArguments, args: DPOConfig, model_args: ModelConfig) -> None:
    """Check the arguments, validate and format the data (report in output_dir), load, train (resuming), save once."""
    check_arguments(recipe, args)
    keep_token_off_disk(args)
    processor = load_processor(model_args.model_name_or_path, recipe.max_pixels)
    pairs = format_splits({"train": load_splits(recipe.dataset_name, [recipe.dataset_train_split])[0]}, "rlaif_v",
                          processor, min(recipe.max_tokens, args.max_length or recipe.max_tokens),
                          {"train": (recipe.max_dropped_fraction, "--max_dropped_fraction")}, args.output_dir,
                          write=args.process_index == 0)["train"]
    # ref_model=None: with PEFT the reference is the base with the adapter disabled, no second copy
    trainer = DPOTrainer(model=load_model(model_args), ref_model=None, args=args, train_dataset=pairs,
                         processing_class=processor, peft_config=get_peft_config(model_args))
    train_and_save(trainer)


def cli(argv: list[str]) -> None:
    """Parse `argv` TRL-style with the notebook's defaults and run."""
    main(*parse((RecipeArguments, DPOConfig, ModelConfig), DEFAULTS, argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
