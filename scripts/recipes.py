"""What the command-line recipes beside it share: arguments and their checks, loading, data reports, train-and-save."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import torch
from transformers import AutoModelForImageTextToText

from helpers.data import FORMATTERS, describe_bad_rows, format_dataset
from helpers.vision import QWEN2VL_MIN_PIXELS


def load_model(model_args: Any) -> Any:
    """The model for TRL's `ModelConfig`, 4-bit when asked."""
    from accelerate import PartialState
    from trl import get_quantization_config

    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    quantization = get_quantization_config(model_args)
    on_gpu = quantization is not None and torch.cuda.is_available()  # 4-bit weights load straight onto this rank's GPU
    try:
        return AutoModelForImageTextToText.from_pretrained(
            model_args.model_name_or_path, dtype=dtype, attn_implementation=model_args.attn_implementation,
            quantization_config=quantization, device_map={"": PartialState().local_process_index} if on_gpu else None)
    except (OSError, ValueError) as err:  # unknown id, offline without a cache, no model or weights in a folder
        fail(f"cannot load --model_name_or_path {model_args.model_name_or_path!r}: {type(err).__name__}: {err}")


def load_processor(hub_id: str, max_pixels: int) -> Any:
    """`helpers.processors.load_processor`, or one line when the model's files cannot be had (unknown id, offline)."""
    from helpers.processors import load_processor as load

    try:
        return load(hub_id, max_pixels)
    except Exception as err:  # not found, offline without a cache, not a processor's files: the CLI's boundary
        fail(f"cannot load the processor of --model_name_or_path {hub_id!r}: {type(err).__name__}: {err}")


def fail(message: str) -> NoReturn:
    """Print one `error:` line and exit with status 2, as argparse does (no traceback, before any model loads)."""
    print(f"{Path(sys.argv[0]).name}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def accept_bare_flags(parser: Any, argv: list[str]) -> list[str]:
    """`--bf16` alone means `--bf16 true`, as in older TRL: trl 1.16 declares some switches `bool | None`, which its
    parser then makes take a value, so common launch lines (`... --bf16 --use_peft ...`) fail with "expected one
    argument"."""
    takes_value = {opt for a in parser._actions if a.nargs is None and getattr(a.type, "__name__", "") == "string_to_bool"
                   for opt in a.option_strings}
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        nxt = argv[i + 1] if i + 1 < len(argv) else "--"
        if arg in takes_value and nxt.startswith("--"):
            out.append("true")
    return out


def parse(types: tuple, defaults: dict, argv: list[str]) -> tuple:
    """TRL-style arguments: `TrlParser(types)` with the notebook's `defaults`, bare boolean switches accepted."""
    from trl import TrlParser

    parser = TrlParser(types)
    parser.set_defaults(**defaults)
    parser.error = fail  # argparse's own errors as one line, without the usage of 200 flags
    try:
        return parser.parse_args_and_config(args=accept_bare_flags(parser, argv))
    except ValueError as err:  # unknown flags, and the configs' own checks in __post_init__
        fail(err)


def check_arguments(recipe: Any, args: Any) -> None:
    """Fail with one line on values that would otherwise fail only once the model is loaded, or never."""
    if not args.learning_rate > 0:
        fail(f"--learning_rate must be positive, got {args.learning_rate}")
    if recipe.max_pixels < QWEN2VL_MIN_PIXELS:
        fail(f"--max_pixels must be at least {QWEN2VL_MIN_PIXELS} (56x56, the processor's minimum), "
             f"got {recipe.max_pixels}")
    if recipe.max_tokens < 1:
        fail(f"--max_tokens must be positive, got {recipe.max_tokens}")
    for name in ("max_dropped_fraction", "max_dropped_test_fraction"):
        if not 0 <= getattr(recipe, name, 0) <= 1:
            fail(f"--{name} must be between 0 and 1, got {getattr(recipe, name)}")
    if getattr(recipe, "formatter", "chartqa") not in FORMATTERS:
        fail(f"--formatter must be one of {sorted(FORMATTERS)}, got {recipe.formatter!r}")
    try:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        probe = Path(args.output_dir) / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        fail(f"--output_dir {args.output_dir} is not writable: {err}")


def keep_token_off_disk(args: Any) -> None:
    """Move `--hub_token` to HF_TOKEN (huggingface_hub reads it): the Trainer pickles args into training_args.bin."""
    if args.hub_token:
        os.environ["HF_TOKEN"] = args.hub_token
        args.hub_token = None


def load_splits(name: str, splits: list[str]) -> list[Any]:
    """The `splits` of a hub data set or a local folder of data files; one line on failure."""
    from datasets import load_dataset

    try:
        return load_dataset(name, split=splits)
    except Exception as err:  # not found, offline, unknown split, bad slice: the CLI's boundary
        fail(f"cannot load --dataset_name {name!r} with splits {splits}: {err}")


def format_splits(splits: dict[str, Any], kind: str, processor: Any, max_tokens: int,
                  limits: dict[str, tuple[float, str]], output_dir: str, write: bool = True,
                  keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Format each split (keeping the source columns `keep`); print dropped rows, write data_report.json, fail past a
    split's (fraction, flag) limit."""
    report, formatted = {}, {}
    for split, raw in splits.items():
        try:
            formatted[split], bad = format_dataset(raw, kind, processor=processor, max_tokens=max_tokens, keep=keep)
        except (KeyError, TypeError, ValueError) as err:
            fail(f"{split} split: {err}")
        print(f"{split}: {describe_bad_rows(bad, len(raw))}", flush=True)
        report[split] = {"rows": len(raw), "kept": len(formatted[split]), "max_tokens": max_tokens,
                         "dropped": [{"index": i, "reason": reason} for i, reason in bad]}
    path = Path(output_dir) / "data_report.json"
    if write:
        path.write_text(json.dumps(report, indent=1))
    for split, (limit, flag) in limits.items():
        rows, dropped = report[split]["rows"], len(report[split]["dropped"])
        if report[split]["kept"] == 0:
            fail(f"the {split} split has no usable row ({dropped} of {rows} dropped; reasons in {path})")
        if dropped > limit * rows:
            fail(f"{dropped} of {rows} {split} rows ({dropped / rows:.0%}) are unusable, more than {flag} {limit} "
                 f"allows; reasons in {path}")
    return formatted


def engine(trainer: Any) -> str:
    """How the trainer is distributed, as accelerate sees it: e.g. `MULTI_CPU`, `MULTI_GPU`, `FSDP`, `DEEPSPEED ZeRO-3`."""
    state = trainer.accelerator.state
    plugin = state.deepspeed_plugin
    return state.distributed_type.value + (f" ZeRO-{plugin.zero_stage}" if plugin is not None else "")


def train_and_save(trainer: Any) -> None:
    """Train (resuming from the last checkpoint if any), then write the adapter and the log history once (main rank)."""
    from helpers.training import train_resumable

    print(f"rank {trainer.args.process_index} of world size {trainer.args.world_size}, {engine(trainer)}", flush=True)
    train_resumable(trainer)
    trainer.save_model(trainer.args.output_dir)
    trainer.save_state()  # trainer_state.json with the log history
    if torch.distributed.is_initialized():  # a rank that exits with its process group alive can abort (SIGABRT)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
