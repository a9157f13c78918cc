"""Start-up code of the tiny environment (`tools/tiny-env`), run by every Python process started inside it.

It changes the libraries, never the program: no network; `google.colab` absent; `datasets.load_dataset` serves the
shipped samples for the cookbook's hub ids, with the smaller splits of `tinyenv/numbers.toml`; every `TrainingArguments`
(SFT, DPO, GRPO configs) whose `output_dir` names a run listed there gets that run's smaller numbers, and runs on the
CPU when there is no GPU (unless `TINY_ENV_CPU=0`); bitsandbytes gets its CPU fix (bnb_cpu.py). The models come from the Hub cache `tools/tiny-env`
points `HF_HUB_CACHE` at, through huggingface_hub's own offline lookup.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable

import netguard

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NUMBERS = tomllib.loads(Path(os.environ.get("TINY_ENV_NUMBERS", HERE.parent / "numbers.toml")).read_text())
SPLITS: dict[str, dict[str, str]] = {}  # data set -> {split the program names: split of the sample}
TRAIN: dict[str, dict[str, Any]] = {}  # run folder name -> TrainingArguments fields
LONGEST_SIDE: int | None = NUMBERS.get("images", {}).get("longest_side")  # images of the listed splits
for listing in NUMBERS.values():
    for dataset, splits in listing.get("splits", {}).items():
        SPLITS.setdefault(dataset, {}).update(splits)
    TRAIN.update(listing.get("train", {}))
SAMPLES = {  # the shipped samples, laid out as the hub's data set repositories (README configs + the parquet files)
    "HuggingFaceM4/ChartQA": "chartqa",
    "openbmb/RLAIF-V-Dataset": "rlaif_v",
    "philschmid/amazon-product-descriptions-vlm": "amazon_products",
}


def tiny_split(dataset: str, split: Any) -> Any:
    """The sample's split standing in for `split` of `dataset` (a name, a slice string, or a list of them)."""
    if isinstance(split, (list, tuple)):
        return type(split)(tiny_split(dataset, s) for s in split)
    return SPLITS.get(dataset, {}).get(split, split) if isinstance(split, str) else split


def listed(dataset: str, split: Any) -> bool:
    """True when every split asked for is one numbers.toml lists for `dataset` (a notebook's own split)."""
    splits = split if isinstance(split, (list, tuple)) else [split]
    return all(isinstance(s, str) and s in SPLITS.get(dataset, {}) for s in splits)


def shrink_images(data: Any) -> Any:
    """`data` (a Dataset or a list of them) with each `image` shrunk to fit LONGEST_SIDE, aspect ratio kept."""
    if isinstance(data, list):
        return [shrink_images(d) for d in data]
    if LONGEST_SIDE is None or "image" not in data.column_names:
        return data

    def shrink(row: dict) -> dict:
        image = row["image"].copy()
        image.thumbnail((LONGEST_SIDE, LONGEST_SIDE))
        return {"image": image}

    return data.map(shrink)


def patch_datasets(datasets: Any) -> None:
    """`load_dataset(hub id, split=...)` loads the shipped sample with the smaller split (its images shrunk when the
    split is a listed one); anything else as before."""
    original = datasets.load_dataset

    def load_dataset(path: str, *args: Any, split: Any = None, **kwargs: Any) -> Any:
        if path in SAMPLES:
            data = original(str(ROOT / "data_samples" / SAMPLES[path]), *args, split=tiny_split(path, split), **kwargs)
            return shrink_images(data) if listed(path, split) else data
        return original(path, *args, split=split, **kwargs)

    datasets.load_dataset = load_dataset


def patch_training_args(module: Any) -> None:
    """Each TrainingArguments whose output_dir's folder name is listed gets its smaller numbers; no GPU: the CPU."""
    cls = module.TrainingArguments
    original = cls.__post_init__

    def __post_init__(self: Any) -> None:
        for field, value in TRAIN.get(Path(str(self.output_dir or "")).name, {}).items():
            setattr(self, field, value)
        import torch

        if not torch.cuda.is_available() and os.environ.get("TINY_ENV_CPU", "1") == "1":  # 0: as the program says
            self.use_cpu = True
        original(self)

    cls.__post_init__ = __post_init__


def patch_bitsandbytes(module: Any) -> None:
    """bitsandbytes' 4-bit layers unpack before a training forward on CPUs with AVX512-BF16 (bnb_cpu.py)."""
    import bnb_cpu

    bnb_cpu.install()


class AfterImport(importlib.abc.MetaPathFinder):
    """Runs a patch right after a module's own code, whoever imports it first."""

    def __init__(self, hooks: dict[str, Callable[[Any], None]]) -> None:
        self.hooks = hooks

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.hooks:
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else getattr(finder, "find_spec", lambda *a: None)(name, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        loader, hook = spec.loader, self.hooks.pop(name)
        exec_module = loader.exec_module

        def run_then_patch(module: Any) -> None:
            exec_module(module)
            hook(module)

        loader.exec_module = run_then_patch
        return spec


class NoColab(importlib.abc.MetaPathFinder):
    """`import google.colab` fails, as it does off Colab."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name == "google.colab" or name.startswith("google.colab."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


netguard.install()
sys.meta_path[:0] = [NoColab(), AfterImport({"datasets": patch_datasets, "transformers.training_args": patch_training_args,
                                             "bitsandbytes": patch_bitsandbytes})]
