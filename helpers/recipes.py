"""What the command-line recipes (scripts/) share with the notebooks: loading a VLM and its processor from ModelConfig."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForImageTextToText

from helpers.tiny import resolve
from helpers.processors import load_processor


def load_vlm(model_args: Any, max_pixels: int) -> tuple[Any, Any]:
    """(model, processor) for TRL's `ModelConfig`, with hub ids resolved (tiny mode) and 4-bit when asked."""
    from accelerate import PartialState
    from trl import get_quantization_config

    model_id = resolve(model_args.model_name_or_path)
    processor = load_processor(model_args.model_name_or_path, max_pixels)
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    quantization = get_quantization_config(model_args)
    on_gpu = quantization is not None and torch.cuda.is_available()  # 4-bit weights load straight onto this rank's GPU
    model = AutoModelForImageTextToText.from_pretrained(
        model_id, dtype=dtype, attn_implementation=model_args.attn_implementation, quantization_config=quantization,
        device_map={"": PartialState().local_process_index} if on_gpu else None)
    return model, processor


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
    return parser.parse_args_and_config(args=accept_bare_flags(parser, argv))


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
