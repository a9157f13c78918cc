"""Image-token arithmetic agrees with the real processor; every PIL mode becomes bounded RGB."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoProcessor

from tinyenv import hub as tiny
from helpers.vision import (MAX_SIDE, idefics2_image_tokens, idefics2_resized_size, image_tokens, prepare_image,
                            qwen2vl_image_tokens, qwen2vl_resized_size, to_rgb)

SIZES = [(600, 800), (1080, 1920), (28, 28), (27, 27), (10, 10), (1, 5), (14, 42), (56, 56), (55, 57),
         (20, 3000), (3000, 20), (50, 9999), (4096, 4096), (5000, 3000), (300, 301), (42, 70), (70, 42)]
CAPS = [dict(), dict(max_pixels=256 * 28 * 28), dict(max_pixels=1024 * 28 * 28, min_pixels=64 * 28 * 28)]


@pytest.fixture(scope="module")
def image_processor():
    return AutoProcessor.from_pretrained("Qwen/Qwen2-VL-7B-Instruct").image_processor


def _processor_tokens(image_processor, height, width, **caps):
    size = {"shortest_edge": caps.get("min_pixels", 3136), "longest_edge": caps.get("max_pixels", 12_845_056)}
    out = image_processor(images=[Image.new("RGB", (width, height))], size=size, return_tensors="pt")
    return int(out["image_grid_thw"].prod()) // image_processor.merge_size ** 2


@pytest.mark.parametrize("caps", CAPS)
@pytest.mark.parametrize("height, width", SIZES)
def test_qwen2vl_image_tokens_match_the_processor(image_processor, height, width, caps):
    assert qwen2vl_image_tokens(height, width, **caps) == _processor_tokens(image_processor, height, width, **caps)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 3000))
def test_qwen2vl_image_tokens_match_the_processor_anywhere(image_processor, height, width):
    if max(height, width) / min(height, width) > 200:
        with pytest.raises(ValueError):
            qwen2vl_image_tokens(height, width)
        return
    assert qwen2vl_image_tokens(height, width) == _processor_tokens(image_processor, height, width)


def test_qwen2vl_known_values_and_bounds():
    assert qwen2vl_image_tokens(600, 800) == 609  # a ChartQA-sized chart
    assert qwen2vl_image_tokens(1080, 1920) == 2691
    assert qwen2vl_image_tokens(20000, 20000) <= 12_845_056 // 784 == 16384
    h, w = qwen2vl_resized_size(600, 800, max_pixels=256 * 784)
    assert h % 28 == w % 28 == 0 and h * w <= 256 * 784


def test_idefics2_tokens_without_and_with_splitting():
    assert (idefics2_image_tokens(False), idefics2_image_tokens(True)) == (64, 320)


# The (height, width) pairs include near-squares and 2:1 shapes where rounding, not flooring, the scaled side is a
# pixel off (3000x2999, 1961x1000) or a patch off (1373x706: 503.9 px floors to 35 patches, rounds to 36).
IDEFICS2_SIZES = [(600, 800), (1000, 1333), (2000, 1001), (300, 5000), (979, 981), (1234, 567), (100, 100),
                  (3000, 2999), (1961, 1000), (1000, 1961), (1373, 706)]


@pytest.fixture(scope="module")
def processors():
    from transformers import AutoConfig

    paths = {hub_id: tiny.snapshot(hub_id) for hub_id in ("Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b")}
    return {hub_id: (AutoProcessor.from_pretrained(p), AutoConfig.from_pretrained(p)) for hub_id, p in paths.items()}


@pytest.mark.parametrize("height, width", IDEFICS2_SIZES)
def test_idefics2_resized_size_matches_the_processor(processors, height, width):
    image_processor = processors["HuggingFaceM4/idefics2-8b"][0].image_processor
    out = image_processor(images=[Image.new("RGB", (width, height))], do_image_splitting=False, return_tensors="pt")
    assert idefics2_resized_size(height, width) == tuple(out["pixel_values"].shape[-2:])


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("height, width", [(600, 800), (1373, 706), (2000, 1001)])
@pytest.mark.parametrize("hub_id", ["Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b"])
def test_image_tokens_and_patches_match_the_processor(processors, hub_id, height, width, split):
    """`image_tokens(config, ...)`, as budgets and benchmarks use it: the processor's tokens, the tower's patches."""
    processor, config = processors[hub_id]
    image = Image.new("RGB", (width, height))
    if "qwen" in hub_id.lower():  # hub default cap, so the processor's own settings apply; Qwen2-VL never splits
        out = processor(text=[processor.image_token], images=[image], return_tensors="pt")
        patches = int(out["image_grid_thw"].prod())
        expected = image_tokens(config, height, width, max_pixels=12_845_056, do_image_splitting=split)
    else:
        processor.image_processor.do_image_splitting = split  # as loading with do_image_splitting= sets it (a call-time
        # argument would split the pixels but not the text's token count, in transformers 5.23)
        out = processor(text=["<image>"], images=[image], return_tensors="pt")
        crops, _, h, w = out["pixel_values"].shape[1:]
        patches = crops * (h // 14) * (w // 14)  # SigLIP's 14-px patches, padded crops included
        expected = image_tokens(config, height, width, do_image_splitting=split)
    tokens = int((out["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids(processor.image_token)).sum())
    assert expected == (tokens, patches)


def _image(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, (20, 30), dtype=np.uint16))
    base = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    return base.convert(mode)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "RGB", "YCbCr"])
def test_every_mode_becomes_rgb_of_the_same_size(mode):
    out = to_rgb(_image(mode))
    assert out.mode == "RGB" and out.size == (30, 20)


def test_sixteen_bit_images_keep_their_contrast():
    out = np.asarray(to_rgb(_image("I;16")))
    assert out.min() == 0 and out.max() == 255  # a plain convert("RGB") clips 16-bit data to white


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255)


def test_prepare_image_bounds_size_and_rejects_slivers():
    assert max(prepare_image(Image.new("RGB", (5000, 2500))).size) == MAX_SIDE
    assert prepare_image(Image.new("RGB", (10, 10))).size == (10, 10)
    with pytest.raises(ValueError):
        prepare_image(Image.new("RGB", (5000, 10)))
