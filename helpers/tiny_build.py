"""Build tiny random-weight Qwen2-VL and Idefics2 checkpoints with the real processor classes and chat templates."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import torch
from transformers import (
    GenerationConfig,
    Idefics2Config,
    Idefics2ForConditionalGeneration,
    Idefics2ImageProcessor,
    Idefics2Processor,
    LlamaTokenizer,
    Qwen2Tokenizer,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from helpers.tiny import CONFIG_DIR, DATA_DIR

SEED = 0
VOCAB_SIZE = 2048
# Wide enough that generations depend on the input: the default 0.02 makes every answer the same tokens.
INIT_RANGE = 0.2
TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, initializer_range=INIT_RANGE)
# Words the chat templates and the notebooks' prompts use, so they tokenize like text, not like bytes.
EXTRA_TEXT = [
    "system user assistant User: Assistant: You are a helpful assistant.",
    "You are a chart analyst. Answer with a single number, word or short phrase read from the chart.",
    "Answer yes or no. Describe the product in two sentences. Write a product description.",
]


def _reference(name: str) -> dict:
    """Load one of the real hub files shipped in data_samples/configs."""
    return json.loads((CONFIG_DIR / name).read_text())


def _processor_kwargs(name: str) -> dict:
    """A shipped preprocessor config as constructor arguments (without its class-name fields)."""
    return {k: v for k, v in _reference(name).items() if k not in ("image_processor_type", "processor_class")}


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


def _llama_with_byte_fallback(trained: LlamaTokenizer, specials: list[str]) -> LlamaTokenizer:
    """Rebuild a trained Llama tokenizer with the 256 <0xNN> byte tokens at ids 3..258, as in Mistral's vocab."""
    model = json.loads(trained.backend_tokenizer.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"<0x{b:02X}>": 3 + b for b in range(256)}
    for token, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False, pad_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": specials})
    return tok


def build_qwen2_vl(out: Path) -> None:
    """Save a tiny Qwen2-VL (real processor, template, special tokens) to `out`."""
    added = _reference("qwen2-vl-instruct.added_tokens.json")
    specials = [t for t, _ in sorted(added.items(), key=lambda kv: kv[1]) if t != "<|endoftext|>"]
    tok = Qwen2Tokenizer().train_new_from_iterator([corpus()], vocab_size=VOCAB_SIZE, new_special_tokens=specials)
    tok.eos_token = "<|im_end|>"
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**_processor_kwargs("qwen2-vl-instruct.preprocessor_config.json")),
        video_processor=Qwen2VLVideoProcessor(),
        tokenizer=tok,
        chat_template=_reference("qwen2-vl-instruct.chat_template.json")["chat_template"],
    )
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2VLConfig(
        text_config=dict(TINY_TEXT, vocab_size=len(tok), bos_token_id=pad, eos_token_id=eos, pad_token_id=pad,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, rope_theta=1e6),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2, initializer_range=INIT_RANGE),
        initializer_range=INIT_RANGE, **ids,
    )
    torch.manual_seed(SEED)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=[eos, pad], pad_token_id=pad, do_sample=False)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def build_idefics2(out: Path) -> None:
    """Save a tiny Idefics2 (real processor, template, special tokens) to `out`."""
    specials = list(_reference("idefics2-8b.added_tokens.json"))
    trained = LlamaTokenizer().train_new_from_iterator([corpus()], vocab_size=VOCAB_SIZE)
    tok = _llama_with_byte_fallback(trained, specials)
    proc_cfg = _reference("idefics2-8b.processor_config.json")
    image_processor = Idefics2ImageProcessor(**_processor_kwargs("idefics2-8b.preprocessor_config.json"))
    processor = Idefics2Processor(image_processor=image_processor, tokenizer=tok,
                                  image_seq_len=proc_cfg["image_seq_len"], chat_template=proc_cfg["chat_template"])
    eou = tok.convert_tokens_to_ids("<end_of_utterance>")
    config = Idefics2Config(
        text_config=dict(TINY_TEXT, model_type="mistral", vocab_size=len(tok), pad_token_id=0, bos_token_id=1,
                         eos_token_id=2, rms_norm_eps=1e-5),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=980, patch_size=14, initializer_range=INIT_RANGE),
        perceiver_config=dict(hidden_size=64, rms_norm_eps=1e-5, resampler_n_latents=proc_cfg["image_seq_len"],
                              resampler_depth=1, resampler_n_heads=4, resampler_head_dim=16, num_key_value_heads=2,
                              initializer_range=INIT_RANGE),
        image_token_id=tok.convert_tokens_to_ids("<image>"), initializer_range=INIT_RANGE,
    )
    torch.manual_seed(SEED)
    model = Idefics2ForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=[2, eou], pad_token_id=0, bos_token_id=1, do_sample=False)
    model.save_pretrained(out)
    processor.save_pretrained(out)


BUILDERS = {"qwen2_vl": build_qwen2_vl, "idefics2": build_idefics2}
