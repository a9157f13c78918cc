"""Build tiny checkpoints that are the hub repositories' files with only the sizes shrunk (and random weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, LlamaTokenizer, Qwen2Tokenizer

from tinyenv.hub import CONFIG_DIR, DATA_DIR
from tinyenv.specs import SPECS

SEED = 0
TINY_VOCAB = 1024  # BPE merges trained on the shipped sample text; the hub's special tokens follow, as on the hub
# Random weights this wide make answers depend on the input (0.02, the hub's initializer_range, makes every answer the
# same tokens). It only sets how the random weights are drawn: config.json keeps the hub's value.
INIT_RANGE = 0.2
# Words the chat templates and the notebooks' prompts use, so they tokenize like text, not like bytes.
EXTRA_TEXT = [
    "system user assistant User: Assistant: You are a helpful assistant.",
    "You are a chart analyst. Answer with a single number, word or short phrase read from the chart.",
    "Answer yes or no. Describe the product in two sentences. Write a product description.",
]

VOCAB_KEYS = ("vocab_size", "text_config.vocab_size")  # shrunk to the tiny tokenizer's padded size
# Keys whose values are token ids (bad_words_ids: lists of lists; Gemma 3: boi_token_index, image_token_index).
ID_KEYS = ("token_id", "token_ids", "words_ids", "token_index")


def hub_file(name: str) -> str:
    """The text of a hub file shipped in data_samples/configs/."""
    return (CONFIG_DIR / name).read_text()


def corpus() -> list[str]:
    """Every string in the shipped data samples, in a fixed order, for tokenizer training."""
    texts = list(EXTRA_TEXT)
    for path in sorted(DATA_DIR.glob("*/data/*.parquet")):
        table = pq.read_table(path)
        for column in table.column_names:
            values = table.column(column).to_pylist()
            texts += [v for v in values if isinstance(v, str)]
            texts += [s for v in values if isinstance(v, list) for s in v if isinstance(s, str)]
    for path in sorted(DATA_DIR.glob("amber/*.json")):
        texts += [row.get("query", row.get("truth", "")) for row in json.loads(path.read_text())]
    return texts


def id_map(kind: str, first_added_id: int) -> dict[int, int]:
    """Hub id -> tiny id of each added token: the same order, moved to follow the tiny vocabulary (gaps closed)."""
    added = json.loads(hub_file(SPECS[kind]["added_tokens"]))
    return {hub: first_added_id + rank for rank, hub in enumerate(sorted(added.values()))}


def remap_ids(value: Any, ids: dict[int, int], key: str = "") -> Any:
    """`value` with every token id moved by `ids`: values of keys ending in ID_KEYS, and added_tokens_decoder's keys."""
    if isinstance(value, dict):
        return {str(ids.get(int(k), k)) if key == "added_tokens_decoder" and k.isdigit() else k: remap_ids(v, ids, k)
                for k, v in value.items()}
    if key.endswith(ID_KEYS):
        if isinstance(value, list):
            return [remap_ids(v, ids, key) for v in value]
        return ids.get(value, value) if isinstance(value, int) else value
    return value


def shrink(config: dict, sizes: dict[str, Any]) -> dict:
    """A copy of `config` with the dotted keys of `sizes` set (nested dicts created where the hub file omits them)."""
    out = json.loads(json.dumps(config))
    for dotted, size in sizes.items():
        *parents, leaf = dotted.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = size
    return out


def _write_hub_files(out: Path, kind: str, ids: dict[int, int], vocab_size: int) -> None:
    """Write every hub file of `kind`: verbatim, or with sizes shrunk and token ids moved where it holds them."""
    spec = SPECS[kind]
    for name, source in spec["files"].items():
        text = hub_file(source)
        if name == "config.json":
            vocab_keys = [k for k in VOCAB_KEYS if _has(text, k)] + ([spec["vocab_key"]] if "vocab_key" in spec else [])
            config = shrink(json.loads(text), spec["shrink"] | dict.fromkeys(vocab_keys, vocab_size))
            text = json.dumps(remap_ids(config, ids), indent=2) + "\n"
        elif name == "added_tokens.json":
            text = json.dumps({t: ids[i] for t, i in json.loads(text).items()}) + "\n"
        elif any(k in text for k in ("token_id", "added_tokens_decoder")):
            text = json.dumps(remap_ids(json.loads(text), ids), indent=2) + "\n"
        (out / name).write_text(text)


def _has(config_text: str, dotted: str) -> bool:
    """Whether the hub config holds the dotted key."""
    node: Any = json.loads(config_text)
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _padded(n: int, multiple: int) -> int:
    """`n` rounded up to a multiple of `multiple`, as the hub pads its embedding tables."""
    return -(-n // multiple) * multiple


def _trained_bpe(tokenizer: Any) -> tuple[list[str], list]:
    """The regular tokens (in id order) and merges of a tokenizer trained on the sample corpus."""
    model = json.loads(tokenizer.train_new_from_iterator([corpus()], vocab_size=TINY_VOCAB).backend_tokenizer.to_str())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["model"]["merges"]]
    return [t for t, _ in sorted(model["model"]["vocab"].items(), key=lambda kv: kv[1])], merges


def _save_model(out: Path, kind: str) -> None:
    """Random weights for the shrunk config, drawn wide (INIT_RANGE or the spec's), saved in the hub's dtype."""
    config = AutoConfig.from_pretrained(out)
    hub = json.loads((out / "config.json").read_text())
    dtype = getattr(torch, hub.get("torch_dtype") or hub["text_config"]["dtype"])  # Qwen3-VL: text_config.dtype
    for sub in [config, *(getattr(config, k) for k in config.sub_configs)]:
        sub.initializer_range = SPECS[kind].get("init_range", INIT_RANGE)
    torch.manual_seed(SEED)
    model = AutoModelForImageTextToText.from_config(config).to(dtype)
    model.save_pretrained(out)
    _write_hub_files(out, kind, *_written_ids(out, kind))  # save_pretrained rewrote config.json: restore the hub's


def _written_ids(out: Path, kind: str) -> tuple[dict[int, int], int]:
    """The id map and vocabulary size recorded in the tiny tokenizer saved in `out`."""
    added = json.loads(hub_file(SPECS[kind]["added_tokens"]))
    tokens = json.loads((out / "tokenizer.json").read_text())["added_tokens"]
    first = min(t["id"] for t in tokens if t["content"] in added)
    n = max(t["id"] for t in tokens) + 1
    return id_map(kind, first), _padded(n, SPECS[kind]["vocab_multiple"])


def build_qwen(out: Path, kind: str = "qwen2_vl") -> None:
    """Tiny Qwen2-VL / Qwen2.5-VL / Qwen3-VL: the hub's config (shrunk), processor files, added tokens; random weights."""
    added = json.loads(hub_file(SPECS[kind]["added_tokens"]))
    regular, merges = _trained_bpe(Qwen2Tokenizer())
    regular = [t for t in regular if t not in added]
    vocab = {t: i for i, t in enumerate(regular)} | {t: len(regular) + i - min(added.values()) for t, i in added.items()}
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                         unk_token=None, errors="replace")
    tok.add_special_tokens({"additional_special_tokens": [t for t in sorted(added, key=added.get)
                                                          if t not in ("<|endoftext|>", "<|im_end|>")]})
    tok.save_pretrained(out)
    _write_hub_files(out, kind, *_written_ids(out, kind))
    _save_model(out, kind)


def build_idefics2(out: Path) -> None:
    """Tiny idefics2-8b: the hub's config (shrunk) and processor files, a Mistral-style vocabulary; random weights."""
    added = json.loads(hub_file(SPECS["idefics2"]["added_tokens"]))
    regular, merges = _trained_bpe(LlamaTokenizer())
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"<0x{b:02X}>": 3 + b for b in range(256)}  # as in Mistral's vocab
    for token in regular:
        vocab.setdefault(token, len(vocab))
    first = len(vocab)
    vocab |= {t: first + i - min(added.values()) for t, i in added.items()}
    tok = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False, pad_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": sorted(added, key=added.get)})
    tok.save_pretrained(out)
    _write_hub_files(out, "idefics2", *_written_ids(out, "idefics2"))
    _save_model(out, "idefics2")


BUILDERS = {"qwen2_vl": build_qwen, "idefics2": build_idefics2}
