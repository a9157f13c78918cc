"""QLoRA/LoRA SFT of a VLM on ChartQA (notebook 03) as a command-line recipe for `accelerate launch`.

    accelerate launch --config_file configs/multi_gpu.yaml scripts/sft.py --output_dir runs/sft
`tools/tiny-env accelerate launch ...` runs it offline on tiny stand-ins of the model and data set.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

from helpers.vision import CHARTQA_MAX_PIXELS

from recipes import (check_arguments, format_splits, keep_token_off_disk, load_model, load_processor, load_splits,
                     parse, train_and_save)

# The notebook's recipe; every value can be overridden on the command line or in a --config YAML.
DEFAULTS = dict(model_name_or_path="Qwen/Qwen2-VL-7B-Instruct", dtype="bfloat16", load_in_4bit=True,
                bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True, use_peft=True, lora_r=8, lora_alpha=16,
                lora_dropout=0.05, lora_target_modules=["q_proj", "v_proj"], num_train_epochs=1,
                per_device_train_batch_size=4, gradient_accumulation_steps=8, learning_rate=2e-4,
                lr_scheduler_type="cosine", warmup_steps=0.03, activation_checkpointing=True, bf16=True,
                max_length=None, eval_strategy="steps", eval_steps=20, save_strategy="steps", save_steps=20,
                save_total_limit=2, logging_steps=5, report_to="trackio", project="vlm-cookbook", seed=0)


@dataclass
class RecipeArguments:
    """Data and image settings of the recipe."""

    dataset_name: str = "HuggingFaceM4/ChartQA"
    dataset_train_split: str = "train[:10%]"
    dataset_test_split: str = "val[:10%]"
    formatter: str = field(default="chartqa", metadata={"help": "helpers.data formatter: chartqa or product"})
    max_pixels: int = CHARTQA_MAX_PIXELS
    max_tokens: int = field(default=2048, metadata={"help": "rows longer than this (text + image tokens) are dropped "
                                                            "and reported; a ChartQA row at the default cap is ~700"})
    max_dropped_fraction: float = field(default=0.05, metadata={
        "help": "fail when more of the train split is unusable (default 5 %: a few broken rows are normal, more "
                "means wrong columns or a wrong formatter)"})
    max_dropped_test_fraction: float = field(default=0.0, metadata={
        "help": "the same for the test split (default 0: any unusable evaluation row is an error)"})


def main(recipe: RecipeArguments, args: SFTConfig, model_args: ModelConfig) -> None:
    """Check the arguments, validate and format the data (report in output_dir), load, train (resuming), save once."""
    check_arguments(recipe, args)
    keep_token_off_disk(args)
    processor = load_processor(model_args.model_name_or_path, recipe.max_pixels)
    splits = load_splits(recipe.dataset_name, [recipe.dataset_train_split, recipe.dataset_test_split])
    data = format_splits(dict(zip(("train", "test"), splits)), recipe.formatter, processor,
                         min(recipe.max_tokens, args.max_length or recipe.max_tokens),
                         {"train": (recipe.max_dropped_fraction, "--max_dropped_fraction"),
                          "test": (recipe.max_dropped_test_fraction, "--max_dropped_test_fraction")},
                         args.output_dir, write=args.process_index == 0)
    trainer = SFTTrainer(model=load_model(model_args), args=args, train_dataset=data["train"],
                         eval_dataset=data["test"], processing_class=processor, peft_config=get_peft_config(model_args))
    train_and_save(trainer)


def cli(argv: list[str]) -> None:
    """Parse `argv` TRL-style with the notebook's defaults and run."""
    main(*parse((RecipeArguments, SFTConfig, ModelConfig), DEFAULTS, argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
