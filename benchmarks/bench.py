"""What the benchmark scripts share: synthetic ChartQA/RLAIF-V-like rows, real-size random-weight models, results."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from helpers.models import swap_for
from helpers.weights import load_config

TOKEN_FIELDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id", "bos_token_id",
                "eos_token_id", "pad_token_id")


def rows(n: int, size: tuple[int, int], dpo: bool) -> list[dict]:
    """`n` formatted rows with a noise image of `size`: ChartQA-like prompt/completion, or RLAIF-V-like preferences."""
    from PIL import Image

    from helpers.data import format_chartqa, format_rlaif_v

    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        pixels = torch.randint(0, 256, (size[0], size[1], 3), generator=g, dtype=torch.uint8).numpy()
        image = Image.fromarray(pixels)
        question = f"What is the value of the tallest bar in the chart for the year {2000 + i}?"
        if dpo:
            out.append(format_rlaif_v({"image": image, "question": question, "chosen": "A red bar of 42 units. " * 4,
                                       "rejected": "A blue bar with a cat on it. " * 4, "origin_dataset": "x",
                                       "origin_split": "x", "idx": i, "image_path": "x", "ds_name": "x"}))
        else:
            out.append(format_chartqa({"image": image, "query": question, "label": ["42"], "human_or_machine": 0}))
    return out


def load(hub_id: str, method: str, tiny: bool, workdir: Path, attn: str = "sdpa") -> tuple[Any, Any, Any]:
    """(model, processor, config): the tiny checkpoint, or the real config with random weights (4-bit: saved once
    under `workdir` and reloaded quantized); token ids follow the tiny tokenizer, which the processor uses.
    Run inside tools/tiny-env, where `hub_id` loads the tiny checkpoint (offline, also on the GPU runner)."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    processor = AutoProcessor.from_pretrained(hub_id, **swap_for(hub_id).processor_kwargs)  # idefics2: no splitting
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16) if method == "qlora" else None
    path = hub_id if tiny else workdir / f"random-{hub_id.replace('/', '--')}"
    if not tiny:
        config, tiny_config = load_config(hub_id), AutoConfig.from_pretrained(hub_id)
        for cfg, src in ((config, tiny_config), (config.get_text_config(), tiny_config.get_text_config())):
            for field in TOKEN_FIELDS:
                if hasattr(src, field):
                    setattr(cfg, field, getattr(src, field))
        if quant is None or not Path(path).exists():
            with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
                model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16, attn_implementation=attn)
            if quant is None:
                return model, processor, config
            model.save_pretrained(path)
            del model
            torch.cuda.empty_cache()
    device_map = {"": 0} if torch.cuda.is_available() else None
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.bfloat16, quantization_config=quant,
                                                        device_map=device_map, attn_implementation=attn)
    return model, processor, model.config


def arguments(doc: str) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring's first line, --tiny and --out."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models on CPU (what CI runs)")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the results file")
    return parser


def require_device(tiny: bool) -> None:
    """Tiny runs use the CPU even where a GPU exists; real-size runs need one."""
    if tiny:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    elif not torch.cuda.is_available():
        raise SystemExit("no GPU: run with --tiny, or on the GPU runner")


def device_name() -> str:
    """The GPU's name, or cpu-<machine>."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu-{platform.machine()}"


def environment() -> dict[str, Any]:
    """Device, driver, package versions and date, for a results file."""
    import peft
    import transformers
    import trl

    cuda = torch.cuda.is_available()
    driver = None
    if cuda:
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=30).stdout.strip() or None
        except OSError:
            pass
    return {"device": device_name(), "driver": driver,
            "cuda": torch.version.cuda if cuda else None, "date": datetime.date.today().isoformat(),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                         "peft": peft.__version__}}


def save_report(report: dict, name: str, out_dir: str | Path, tiny: bool) -> Path:
    """Write `report` to <out_dir>/<name>-<device slug>.json (cpu-tiny for tiny runs); return the path."""
    slug = "cpu-tiny" if tiny else report["device"].lower().replace(" ", "-")
    path = Path(out_dir) / f"{name}-{slug}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print("saved", path)
    return path
