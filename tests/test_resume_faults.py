"""A run SIGKILLed while it writes a checkpoint resumes from the newest complete one and ends bit-identical to an
uninterrupted run; incomplete checkpoints are named and set aside, and damaged ones are never resumed from silently."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from datasets import load_dataset
from test_training import STEPS, adapter, make_trainer
from transformers.trainer_utils import get_last_checkpoint

from helpers.checkpoints import checkpoint_problem
from helpers.data import format_dataset
from tinyenv.hub import REPO_ROOT
from helpers.training import DamagedCheckpoint, last_checkpoint, train_resumable

# where the worker dies inside the save of checkpoint-4, and what the checkpoint check must then say
KILLS = {"empty": "the folder is empty", "before_optimizer": "optimizer.pt is missing",
         "mid_adapter": "adapter_model.safetensors is truncated"}


@pytest.fixture(scope="module")
def data():
    return format_dataset(load_dataset("HuggingFaceM4/ChartQA", split="train[:8]"), "chartqa")[0]


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """One real SIGKILL mid-save per kill point (the three workers run side by side): {point: output_dir}."""
    root = tmp_path_factory.mktemp("killed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO_ROOT)]))}
    workers = {}
    for point in KILLS:
        (root / point).mkdir()
        log = (root / f"{point}.log").open("w")
        workers[point] = subprocess.Popen([sys.executable, "tests/resume_worker.py", str(root / point), point],
                                          cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    for point, worker in workers.items():
        marker = root / point / "kill-me"
        while not marker.exists():
            if worker.poll() is not None or time.monotonic() > deadline:
                worker.kill()
                pytest.fail(f"{point}: worker never reached the save:\n{(root / f'{point}.log').read_text()[-3000:]}")
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        assert worker.wait() == -signal.SIGKILL
        marker.unlink()
    return {point: root / point for point in KILLS}


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted run: its folder (checkpoints 2, 4, 6), adapter and losses."""
    folder = tmp_path_factory.mktemp("straight")
    trainer = make_trainer(data, folder)
    trainer.train()
    return folder, adapter(trainer), losses(trainer)


def losses(trainer):
    return [row["loss"] for row in trainer.state.log_history if "loss" in row]


def copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "run"))


@pytest.mark.parametrize("point", list(KILLS))
def test_a_kill_mid_save_leaves_a_checkpoint_the_plain_lookup_would_pick(point, killed):
    """Negative control: transformers' `get_last_checkpoint` returns the half-written folder; ours names its defect."""
    folder = killed[point]
    assert get_last_checkpoint(str(folder)).endswith("checkpoint-4")
    assert checkpoint_problem(folder / "checkpoint-4").startswith(KILLS[point])
    assert checkpoint_problem(folder / "checkpoint-2") is None
    assert last_checkpoint(folder).endswith("checkpoint-2")


@pytest.mark.parametrize("point", list(KILLS))
def test_resume_after_a_kill_mid_save_is_bit_identical(point, killed, reference, data, tmp_path, capsys):
    run = copy(killed[point], tmp_path)
    resumed = make_trainer(data, run)
    train_resumable(resumed)
    out = capsys.readouterr().out
    assert f"skipping checkpoint-4: {KILLS[point]}" in out and "set aside as checkpoint-4.incomplete" in out
    assert f"resuming from {run / 'checkpoint-2'} (the newest complete checkpoint)" in out
    assert resumed.state.global_step == STEPS
    got, expected = adapter(resumed), reference[1]
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    assert losses(resumed) == reference[2]
    assert (run / "checkpoint-4.incomplete").is_dir() and checkpoint_problem(run / "checkpoint-4") is None


@pytest.mark.parametrize("point", ["before_optimizer", "mid_adapter"])
def test_only_damaged_checkpoints_left_is_a_clear_refusal(point, killed, data, tmp_path):
    run = copy(killed[point], tmp_path)
    shutil.rmtree(run / "checkpoint-2")
    with pytest.raises(DamagedCheckpoint, match=f"checkpoint-4: {KILLS[point]}"):
        train_resumable(make_trainer(data, run))
    assert (run / "checkpoint-4").is_dir()  # nothing was moved or overwritten


def test_restart_if_damaged_trains_afresh_and_keeps_the_damaged_folder(killed, reference, data, tmp_path):
    run = copy(killed["empty"], tmp_path)
    shutil.rmtree(run / "checkpoint-2")
    trainer = make_trainer(data, run)
    train_resumable(trainer, restart_if_damaged=True)
    assert losses(trainer) == reference[2] and (run / "checkpoint-4.incomplete").is_dir()


def test_a_checkpoint_without_optimizer_state_is_skipped_not_resumed_with_a_fresh_optimizer(reference, data, tmp_path,
                                                                                           capsys):
    run = copy(reference[0], tmp_path)
    shutil.rmtree(run / "checkpoint-6")
    (run / "checkpoint-4" / "optimizer.pt").unlink()
    # negative control: the Trainer itself resumes from it without a word and ends elsewhere (a fresh AdamW at step 4)
    plain = make_trainer(data, tmp_path / "plain")
    plain.train(resume_from_checkpoint=str(run / "checkpoint-4"))
    assert plain.state.global_step == STEPS and losses(plain)[-1] != reference[2][-1]
    resumed = make_trainer(data, run)
    train_resumable(resumed)
    assert "skipping checkpoint-4: optimizer.pt is missing" in capsys.readouterr().out
    assert losses(resumed) == reference[2]


NEEDED = {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"}
DAMAGE = {
    "delete": lambda p: p.unlink(),
    "empty": lambda p: p.write_bytes(b""),
    "truncate": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "flip a byte": lambda p: flip_a_stored_byte(p),
}


def flip_a_stored_byte(path: Path) -> None:
    """Corrupt one byte inside the largest tensor of a torch zip file (not in the padding between records)."""
    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda e: e.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[entry.header_offset + 26:entry.header_offset + 30])
    i = entry.header_offset + 30 + name_len + extra_len + entry.file_size // 2
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_every_damage_to_a_needed_file_is_named_and_other_files_do_not_matter(reference, tmp_path):
    """Each file of a complete checkpoint x each damage: the check names the file iff resuming needs it (no false
    positive on the processor files, README.md or training_args.bin, which a resume never reads)."""
    source = reference[0] / "checkpoint-2"
    outcomes = {"named": 0, "harmless": 0}
    for name in sorted(p.name for p in source.iterdir()):
        for how, damage in DAMAGE.items():
            if how == "flip a byte" and name not in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
                continue  # only the torch zip files carry checksums; a flipped byte elsewhere may stay valid
            folder = Path(shutil.copytree(source, tmp_path / f"{name}-{how.replace(' ', '_')}"))
            damage(folder / name)
            problem = checkpoint_problem(folder)
            if name in NEEDED:
                assert problem is not None and problem.startswith(name), (name, how, problem)
                outcomes["named"] += 1
            else:
                assert problem is None, (name, how, problem)
                outcomes["harmless"] += 1
    assert outcomes["named"] == len(NEEDED) * 3 + 3 and outcomes["harmless"] > 0
    print("checkpoint damage cases:", outcomes)


def test_rng_files_of_another_world_size_do_not_block_a_resume(reference, tmp_path):
    """A checkpoint of a 2-process run resumed on 1 process (the Trainer goes on without RNG states, as it says) is
    usable; one whose own ranks' files are incomplete is not."""
    folder = Path(shutil.copytree(reference[0] / "checkpoint-2", tmp_path / "ckpt"))
    rng = (folder / "rng_state.pth").read_bytes()
    (folder / "rng_state.pth").unlink()
    (folder / "rng_state_0.pth").write_bytes(rng)
    assert checkpoint_problem(folder, world_size=2) == "rng_state_1.pth is missing"
    (folder / "rng_state_1.pth").write_bytes(rng)
    assert checkpoint_problem(folder, world_size=2) is None and checkpoint_problem(folder, world_size=1) is None
    (folder / "rng_state_1.pth").write_bytes(rng[: len(rng) // 2])
    assert checkpoint_problem(folder, world_size=1).startswith("rng_state_1.pth is truncated")
