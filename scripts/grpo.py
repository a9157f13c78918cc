"""GRPO of a VLM on ChartQA with verifiable rewards (notebook 06) as a command-line recipe for `accelerate launch`.

    accelerate launch --config_file configs/single_gpu.yaml scripts/grpo.py --sft_adapter runs/sft/adapter \
        --output_dir runs/grpo
`tools/tiny-env accelerate launch ...` runs it offline on tiny stand-ins of the model and data set.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from peft import PeftModel
from trl import GRPOConfig, GRPOTrainer, ModelConfig, get_peft_config

from rewards import correctness_reward, format_reward
from helpers.vision import CHARTQA_MAX_PIXELS

from recipes import (check_arguments, format_splits, keep_token_off_disk, load_model, load_processor, load_splits,
                     parse, train_and_save)

# The notebook's recipe; every value can be overridden on the command line or in a --config YAML.
DEFAULTS = dict(model_name_or_path="Qwen/Qwen2-VL-7B-Instruct", dtype="bfloat16", use_peft=True, lora_r=8,
                lora_alpha=16, lora_dropout=0.0, lora_target_modules=["q_proj", "v_proj"], num_train_epochs=1,
                per_device_train_batch_size=8, gradient_accumulation_steps=8, num_generations=8,
                max_completion_length=16, temperature=1.0, beta=0.04, loss_type="dapo",
                importance_sampling_level="token", scale_rewards="group", reward_weights=[1.0, 0.5],
                learning_rate=1e-5, lr_scheduler_type="constant_with_warmup", warmup_steps=0.05,
                activation_checkpointing=True, bf16=True, logging_steps=1, save_strategy="steps", save_steps=20,
                save_total_limit=2, report_to="trackio", project="vlm-cookbook", seed=0)


@dataclass
class RecipeArguments:
    """Data, image and starting-point settings of the recipe."""

    dataset_name: str = "HuggingFaceM4/ChartQA"
    dataset_train_split: str = "train[10%:12%]"
    max_pixels: int = CHARTQA_MAX_PIXELS
    max_tokens: int = field(default=2048, metadata={"help": "prompts longer than this (text + image tokens) are "
                                                            "dropped and reported"})
    max_dropped_fraction: float = field(default=0.05, metadata={
        "help": "fail when more of the train split is unusable (default 5 %)"})
    sft_adapter: str | None = field(default=None, metadata={
        "help": "notebook 03's SFT adapter, merged into the base first so that the KL reference is the SFT model; "
                "without it GRPO starts from the base"})


def main(recipe: RecipeArguments, args: GRPOConfig, model_args: ModelConfig) -> None:
    """Check the arguments, validate and format the prompts (report in output_dir), load (merging the SFT adapter if
    given), train with both rewards (resuming), save the adapter once."""
    check_arguments(recipe, args)
    keep_token_off_disk(args)
    processor = load_processor(model_args.model_name_or_path, recipe.max_pixels)
    raw = load_splits(recipe.dataset_name, [recipe.dataset_train_split])[0]
    train = format_splits({"train": raw}, "chartqa", processor, recipe.max_tokens,
                          {"train": (recipe.max_dropped_fraction, "--max_dropped_fraction")}, args.output_dir,
                          write=args.process_index == 0, keep=("label",))["train"]
    train = train.remove_columns("completion")  # GRPO samples the answers; the rewards read the gold `label`
    model = load_model(model_args)
    if recipe.sft_adapter:
        model = PeftModel.from_pretrained(model, recipe.sft_adapter).merge_and_unload()
    trainer = GRPOTrainer(model=model, reward_funcs=[correctness_reward, format_reward], args=args,
                          train_dataset=train, processing_class=processor, peft_config=get_peft_config(model_args))
    train_and_save(trainer)


def cli(argv: list[str]) -> None:
    """Parse `argv` TRL-style with the notebook's defaults and run."""
    main(*parse((RecipeArguments, GRPOConfig, ModelConfig), DEFAULTS, argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
