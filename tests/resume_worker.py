"""A tiny QLoRA SFT run (tests/test_training.py's) that stops inside the save of `checkpoint-4`, at a chosen point,
writes a `kill-me` marker and waits to be SIGKILLed, as a Colab runtime dies mid-save. Used by test_resume_faults.py.

    python tests/resume_worker.py OUTPUT_DIR {empty,before_optimizer,mid_adapter}
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import peft.peft_model
from datasets import load_dataset
from safetensors.torch import save as safetensors_bytes
from test_training import make_trainer

from helpers.data import format_dataset

KILL_AT = "checkpoint-4"


def wait_for_kill(output_dir: Path) -> None:
    """Tell the test to kill this process now, and never return."""
    (output_dir / "kill-me").touch()
    time.sleep(120)
    sys.exit("not killed")


def main(output_dir: Path, point: str) -> None:
    """Train towards 6 steps, saving every 2; die inside the save of step 4 at `point`."""
    data = format_dataset(load_dataset("HuggingFaceM4/ChartQA", split="train[:8]"), "chartqa")[0]
    trainer = make_trainer(data, output_dir)
    if point == "empty":  # the folder exists, nothing is written yet
        save_model = trainer.save_model

        def save_model_then_die(folder=None, _internal_call=False):
            if folder and folder.endswith(KILL_AT):
                Path(folder).mkdir(parents=True)
                wait_for_kill(output_dir)
            return save_model(folder, _internal_call=_internal_call)
        trainer.save_model = save_model_then_die
    elif point == "before_optimizer":  # weights written, optimizer/scheduler/RNG/state not yet
        save_optimizer = trainer._save_optimizer_and_scheduler

        def die_before_optimizer(folder):
            if folder.endswith(KILL_AT):
                wait_for_kill(output_dir)
            return save_optimizer(folder)
        trainer._save_optimizer_and_scheduler = die_before_optimizer
    elif point == "mid_adapter":  # half of adapter_model.safetensors is on disk
        save_file = peft.peft_model.safe_save_file

        def half_written(tensors, filename, metadata=None):
            if KILL_AT in str(filename):
                data = safetensors_bytes(tensors, metadata=metadata)
                with open(filename, "wb") as f:
                    f.write(data[: len(data) // 2])
                    f.flush()
                wait_for_kill(output_dir)
            return save_file(tensors, filename, metadata=metadata)
        peft.peft_model.safe_save_file = half_written
    else:
        raise SystemExit(f"unknown kill point {point!r}")
    trainer.train()
    sys.exit("finished without being killed")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
