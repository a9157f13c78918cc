"""Is a Trainer checkpoint complete? Each file `Trainer._save_checkpoint` writes is there and readable to its end."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json", "adapter_model.bin",
           "pytorch_model.bin")
FULL_CRC_CHECK_BYTES = 2**30  # torch files up to 1 GiB are read whole (CRC of every entry); larger ones: directory only


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The `checkpoint-N` folders of `output_dir`, newest (highest N) first; [] when there is no such folder."""
    root = Path(output_dir)
    found = [p for p in root.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)] if root.is_dir() else []
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)), reverse=True)


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is unusable (truncated, unreadable header), or None: its size must match its header."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 0 or length > size - 8:
            return f"{path.name} is truncated (header incomplete, {size} bytes)"
        try:
            header = json.loads(f.read(length))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError):
            return f"{path.name} has an unreadable header"
    return None if size == 8 + length + end else f"{path.name} is truncated ({size} of {8 + length + end} bytes)"


def torch_file_problem(path: Path) -> str | None:
    """Why a `torch.save` file (a zip archive) is unusable: truncated (no central directory) or an entry's CRC fails."""
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip() if path.stat().st_size <= FULL_CRC_CHECK_BYTES else None
    except (zipfile.BadZipFile, OSError, EOFError):
        return f"{path.name} is truncated or not a torch file"
    return f"{path.name} is corrupt (entry {broken})" if broken else None


def file_problem(path: Path) -> str | None:
    """Why the file at `path` is missing, empty or unreadable, or None."""
    if not path.is_file():
        return f"{path.name} is missing"
    if path.stat().st_size == 0:
        return f"{path.name} is empty"
    if path.suffix == ".safetensors":
        return safetensors_problem(path)
    if path.suffix in (".pt", ".pth", ".bin"):
        return torch_file_problem(path)
    if path.suffix == ".json":
        try:
            json.loads(path.read_text())
        except ValueError:
            return f"{path.name} is not valid JSON (truncated?)"
    return None


def weight_files(folder: Path) -> list[Path]:
    """The model or adapter weight files of a checkpoint (the shards too, when there is an index)."""
    name = next((n for n in WEIGHTS if (folder / n).exists()), None)
    if name is None:
        return [folder / "adapter_model.safetensors"]  # reported as missing
    if name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads((folder / name).read_text())["weight_map"].values()))
        except (ValueError, KeyError):
            return [folder / name]
        return [folder / name, *(folder / s for s in shards)]
    return [folder / name]


def checkpoint_problem(folder: str | Path, world_size: int = 1, save_only_model: bool = False) -> str | None:
    """The first reason `folder` cannot be resumed from (naming the file), or None when it is complete."""
    folder = Path(folder)
    if not any(folder.iterdir()):
        return "the folder is empty"
    needed = weight_files(folder)
    if not save_only_model:
        rng = ["rng_state.pth"] if world_size <= 1 else [f"rng_state_{i}.pth" for i in range(world_size)]
        if (folder / "latest").is_file():  # DeepSpeed: optimizer and scheduler inside the global_step folder it names
            step_dir = folder / (folder / "latest").read_text().strip()
            if not step_dir.is_dir() or not any(step_dir.iterdir()):
                return f"DeepSpeed folder {step_dir.name} is missing or empty"
        elif any(folder.glob("optimizer_*")):  # FSDP sharded optimizer state
            pass
        else:
            needed += [folder / "optimizer.pt", folder / "scheduler.pt"]
        expected, present = [folder / name for name in rng], sorted(folder.glob("rng_state*.pth"))
        other_world_size = present and not any(p.exists() for p in expected)  # the Trainer resumes without them
        needed += present if other_world_size else expected
        needed += [folder / "scaler.pt"] if (folder / "scaler.pt").exists() else []
    needed.append(folder / "trainer_state.json")  # written last
    return next((p for p in map(file_problem, needed) if p), None)
