"""Training runs that survive a Colab disconnect: resume from the last checkpoint, and a way to test it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from helpers.checkpoints import checkpoint_problem, checkpoints


class DamagedCheckpoint(RuntimeError):
    """Checkpoints exist, none is complete: resuming is impossible and a fresh start would discard them silently."""


def usable_checkpoint(output_dir: str | Path, world_size: int = 1,
                      save_only_model: bool = False) -> tuple[str | None, list[tuple[Path, str]]]:
    """(the newest complete checkpoint or None, [(folder, reason)] for each newer incomplete one)."""
    skipped = []
    for folder in checkpoints(output_dir):
        problem = checkpoint_problem(folder, world_size, save_only_model)
        if problem is None:
            return str(folder), skipped
        skipped.append((folder, problem))
    return None, skipped


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete `checkpoint-N` folder in `output_dir`, or None (also when the folder does not exist)."""
    return usable_checkpoint(output_dir)[0]


def set_aside(folder: Path) -> Path:
    """Rename an incomplete checkpoint to `checkpoint-N.incomplete` (kept for inspection, never resumed or rotated)."""
    target, n = folder.with_name(folder.name + ".incomplete"), 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.incomplete{n}")
    return folder.rename(target)


class KeepTrainableDtypes(TrainerCallback):
    """Give resumed trainable weights and optimizer states back the dtype they were trained in.

    TRL trains QLoRA adapters in bf16, but resuming reloads them through peft in fp32, so a resumed run would continue
    in another precision (and not match an uninterrupted one). Casting back is exact: the checkpoint holds bf16 values.
    """

    def __init__(self, model: Any) -> None:
        self.dtypes = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        """Runs after the checkpoint's weights and optimizer state are loaded, before the first step."""
        for name, param in model.named_parameters():
            if name in self.dtypes and param.dtype != self.dtypes[name]:
                param.data = param.data.to(self.dtypes[name])
        for param, param_state in optimizer.state.items():
            for key, value in param_state.items():
                if key != "step" and torch.is_tensor(value) and value.is_floating_point():
                    param_state[key] = value.to(param.dtype)


def train_resumable(trainer: Any, restart_if_damaged: bool = False) -> Any:
    """`trainer.train()` from the newest complete checkpoint (newer incomplete ones named and set aside), or afresh.

    When checkpoints exist but none is complete, raise `DamagedCheckpoint` naming the file, unless `restart_if_damaged`.
    """
    args = trainer.args
    checkpoint, skipped = usable_checkpoint(args.output_dir, args.world_size, args.save_only_model)
    if skipped and checkpoint is None and not restart_if_damaged:
        reasons = "; ".join(f"{folder.name}: {reason}" for folder, reason in skipped)
        raise DamagedCheckpoint(f"no complete checkpoint in {args.output_dir} ({reasons}). Delete or move the damaged "
                                "folder(s) to start afresh, or pass restart_if_damaged=True")
    if skipped and hasattr(trainer, "accelerator"):
        trainer.accelerator.wait_for_everyone()  # every rank has chosen before the main one renames anything
    for folder, reason in skipped:
        aside = set_aside(folder) if args.process_index == 0 else folder
        print(f"skipping {folder.name}: {reason} (an interrupted save); set aside as {aside.name}")
    if checkpoint:
        print(f"resuming from {checkpoint}" + (" (the newest complete checkpoint)" if skipped else ""))
        trainer.add_callback(KeepTrainableDtypes(trainer.model))
    elif skipped:
        print("no complete checkpoint: training from scratch (restart_if_damaged=True)")
    return trainer.train(resume_from_checkpoint=checkpoint)


class Disconnect(RuntimeError):
    """Raised by `DisconnectAfter`: the run dies mid-training, as a Colab runtime does."""


class DisconnectAfter(TrainerCallback):
    """Kill the run when `global_step` reaches `step`, before that step's checkpoint would be written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Raise once the optimizer step is done: work since the last checkpoint is lost, as in a real disconnect."""
        if state.global_step >= self.step:
            raise Disconnect(f"disconnected at step {state.global_step}")


def drop_input_grad_hooks(model: Any) -> int:
    """Remove every `enable_input_require_grads` hook (transformers and TRL each add one per input embedding, also the
    vision tower's patch embedding); return how many. Non-reentrant checkpointing does not need them, and with them a
    frozen vision tower runs a useless backward."""
    removed = 0
    for module in model.modules():
        for key, hook in list(module._forward_hooks.items()):
            if getattr(hook, "__name__", "") == "make_inputs_require_grads":
                del module._forward_hooks[key]
                removed += 1
    return removed
