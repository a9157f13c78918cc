"""What each tiny checkpoint is made of: the hub files it holds, its added tokens and the config sizes shrunk."""

from __future__ import annotations

from typing import Any

# Each tiny checkpoint: the hub files it holds (name in the checkpoint -> shipped copy in data_samples/configs/), the
# config keys shrunk (dotted paths; every other key is the hub's), and the hub id of its first added token.
# Widths are multiples of 64 so that bitsandbytes' AVX512-BF16 CPU path can repack every 4-bit layer (it needs
# in_features divisible by the 64-value quantisation block and out_features by 32).
SPECS: dict[str, dict[str, Any]] = {
    "qwen2_vl": {
        "files": {
            "config.json": "qwen2-vl-7b-instruct.config.json",
            "preprocessor_config.json": "qwen2-vl-instruct.preprocessor_config.json",
            "chat_template.json": "qwen2-vl-instruct.chat_template.json",
            "generation_config.json": "qwen2-vl-7b-instruct.generation_config.json",
            "tokenizer_config.json": "qwen2-vl-7b-instruct.tokenizer_config.json",
        },
        "added_tokens": "qwen2-vl-instruct.added_tokens.json",
        "vocab_multiple": 128,  # the hub pads 151,657 tokens to 152,064 rows (7B) and 151,936 (2B)
        "shrink": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "rope_scaling.mrope_section": [2, 3, 3], "vision_config.depth": 2,
                   "vision_config.embed_dim": 64, "vision_config.num_heads": 4, "vision_config.hidden_size": 64},
    },
    "idefics2": {
        "files": {
            "config.json": "idefics2-8b.config.json",
            "preprocessor_config.json": "idefics2-8b.preprocessor_config.json",
            "processor_config.json": "idefics2-8b.processor_config.json",
            "added_tokens.json": "idefics2-8b.added_tokens.json",
            "generation_config.json": "idefics2-8b.generation_config.json",
            "special_tokens_map.json": "idefics2-8b.special_tokens_map.json",
        },
        "added_tokens": "idefics2-8b.added_tokens.json",
        "vocab_multiple": 1,  # 32,003 rows: Mistral's 32,000 and the 3 added tokens, unpadded
        "shrink": {"text_config.hidden_size": 64, "text_config.intermediate_size": 128,
                   "text_config.num_hidden_layers": 2, "text_config.num_attention_heads": 4,
                   "text_config.num_key_value_heads": 2, "vision_config.hidden_size": 64,
                   "vision_config.intermediate_size": 128, "vision_config.num_hidden_layers": 2,
                   "vision_config.num_attention_heads": 4, "perceiver_config.hidden_size": 64, "perceiver_config.resampler_depth": 1,
                   "perceiver_config.resampler_n_heads": 4, "perceiver_config.resampler_head_dim": 16,
                   "perceiver_config.num_key_value_heads": 2},
    },
}

MATRIX = "matrix/"  # hub files of the model-swap matrix, one folder per hub repository (see its SOURCES.md)
QWEN25, QWEN3 = MATRIX + "Qwen__Qwen2.5-VL-7B-Instruct/", MATRIX + "Qwen__Qwen3-VL-4B-Instruct/"
GEMMA3, SMOLVLM2 = MATRIX + "google__gemma-3-4b-it/", MATRIX + "HuggingFaceTB__SmolVLM2-2.2B-Instruct/"
TEXT_SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2}


def _text(prefix: str, **extra: Any) -> dict[str, Any]:
    """The shrunk language-model sizes under `prefix` (e.g. "text_config.")."""
    return {prefix + k: v for k, v in (TEXT_SIZES | extra).items()}


def _files(folder: str, *names: str) -> dict[str, str]:
    """Checkpoint file name -> shipped copy, for hub files kept under one matrix folder."""
    return {name: folder + name for name in names}


SPECS |= {
    "qwen2_5_vl": {
        "files": _files(QWEN25, "config.json", "preprocessor_config.json", "chat_template.json",
                        "generation_config.json"),
        "added_tokens": QWEN25 + "added_tokens.json",
        "vocab_multiple": 128,  # 151,665 tokens padded to 152,064 rows
        "shrink": _text("", **{"rope_scaling.mrope_section": [2, 3, 3]})
        | {"vision_config." + k: v for k, v in {"depth": 2, "hidden_size": 64, "intermediate_size": 128,
                                                 "num_heads": 4, "out_hidden_size": 64,
                                                 "fullatt_block_indexes": [1]}.items()},
    },
    "qwen3_vl": {
        "files": _files(QWEN3, "config.json", "preprocessor_config.json", "video_preprocessor_config.json",
                        "chat_template.json", "generation_config.json"),
        "added_tokens": QWEN3 + "added_tokens.json",
        "vocab_multiple": 128,  # 151,669 tokens padded to 151,936 rows
        "shrink": _text("text_config.", head_dim=16, **{"rope_scaling.mrope_section": [4, 2, 2]})
        | {"vision_config." + k: v for k, v in {"depth": 2, "hidden_size": 64, "intermediate_size": 128,
                                                 "num_heads": 4, "out_hidden_size": 64,
                                                 "deepstack_visual_indexes": [0, 1]}.items()},
    },
    "gemma3": {
        "files": _files(GEMMA3, "config.json", "preprocessor_config.json", "processor_config.json",
                        "chat_template.json", "generation_config.json", "special_tokens_map.json"),
        "added_tokens": GEMMA3 + "tiny_tokens.json",  # the special tokens the recipes use, at their hub ids
        "vocab_multiple": 64,  # 262,145 tokens padded to 262,208 rows
        "init_range": 0.05,  # Gemma scales embeddings by sqrt(width) and normalises each layer's output: wider
        # random embeddings drown the layers, and every answer repeats the last prompt token (tied lm_head)
        "vocab_key": "text_config.vocab_size",  # the hub file leaves it to Gemma3TextConfig's default
        "shrink": _text("text_config.", head_dim=16)
        | {"vision_config." + k: v for k, v in {"hidden_size": 64, "intermediate_size": 128,
                                                 "num_hidden_layers": 2, "num_attention_heads": 4}.items()},
    },
    "smolvlm2": {
        "files": _files(SMOLVLM2, "config.json", "preprocessor_config.json", "processor_config.json",
                        "chat_template.json", "generation_config.json", "special_tokens_map.json"),
        "added_tokens": SMOLVLM2 + "added_tokens.json",
        "vocab_multiple": 64,  # 49,280 rows: SmolLM2's 49,152 and the 128 added tokens
        "shrink": _text("text_config.", head_dim=16)
        | {"vision_config." + k: v for k, v in {"hidden_size": 64, "intermediate_size": 128,
                                                 "num_hidden_layers": 2, "num_attention_heads": 4}.items()},
    },
}
