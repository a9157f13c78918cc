"""Measure the activation bytes per token of every layer kind the recipes train, at the real widths (CPU, minutes).

The table it prints is `helpers/budget_tables.py`'s `LAYER_ACTIVATIONS`; rerun it after upgrading transformers or peft and paste.
Usage: python benchmarks/activation_probe.py [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers.models.idefics2.modeling_idefics2 import Idefics2EncoderLayer
from transformers.models.mistral.modeling_mistral import MistralDecoderLayer
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLDecoderLayer, Qwen2VLVisionBlock

from helpers.activations import measure_layer
from helpers.budget import LORA_KINDS, layer_width
from helpers.weights import load_config, meta_model

RESULTS = "benchmarks/results/activation-probe-cpu.json"


def layers() -> dict[str, torch.nn.Module]:
    """One meta-device layer of each stack of the real Qwen2-VL-7B and idefics2-8b configs."""
    q, i = load_config("Qwen/Qwen2-VL-7B-Instruct"), load_config("HuggingFaceM4/idefics2-8b")
    for cfg in (q.text_config, q.vision_config, i.text_config, i.vision_config):
        cfg._attn_implementation = "sdpa"  # what from_pretrained picks by default; standalone layers see None
    with torch.device("meta"):
        return {"Qwen2VLDecoderLayer": Qwen2VLDecoderLayer(q.text_config, 0),
                "Qwen2VLVisionBlock": Qwen2VLVisionBlock(q.vision_config),
                "MistralDecoderLayer": MistralDecoderLayer(i.text_config, 0),
                "Idefics2EncoderLayer": Idefics2EncoderLayer(i.vision_config)}


def matrix_layers() -> dict[str, torch.nn.Module]:
    """One meta-device layer of each stack of the model-swap matrix's real configs (Qwen2.5-VL ... SmolVLM2)."""
    from helpers.budget_tables import STACKS
    from helpers.models import MODELS, SEEDS

    out = {}
    for hub_id in MODELS:
        if hub_id not in SEEDS:
            model = meta_model(hub_id)
            for path, _ in STACKS[model.config.model_type]:
                layer = model.get_submodule(path)[0]
                out[type(layer).__name__] = layer
    return out


def main() -> None:
    """Probe every (layer, training kind) pair and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--kinds", nargs="*", help="only these training kinds (frozen, qv, all-linear, full)")
    args = parser.parse_args()
    table, start = {}, time.time()
    for name, layer in {**layers(), **matrix_layers()}.items():
        for kind, targets in LORA_KINDS[name].items():
            if args.kinds and kind not in args.kinds:
                continue
            frozen = kind == "frozen"
            a = measure_layer(layer, targets, tokens=args.tokens, trainable=kind == "full", input_grad=not frozen)
            table[f"{name}/{kind}@{layer_width(layer)}"] = (round(a.saved), round(a.peak))
            print(f"{name:22} {kind:8} saved {a.saved:9.0f} B/token  peak {a.peak:9.0f} B/token  "
                  f"({time.time() - start:.0f} s)", flush=True)
    meta = {"torch": torch.__version__, "tokens": args.tokens, "table": table}
    with open(RESULTS, "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
