"""Image hygiene (any PIL mode to bounded RGB) and image-token arithmetic for Qwen2-VL and Idefics2."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

# Hub defaults of Qwen2-VL-*-Instruct (preprocessor_config.json).
QWEN2VL_MIN_PIXELS = 3136
QWEN2VL_MAX_PIXELS = 12_845_056
QWEN2VL_FACTOR = 28  # patch_size 14 x merge_size 2: one <|image_pad|> token per 28x28 pixels
MAX_ASPECT_RATIO = 200  # Qwen2-VL's processor refuses more elongated images
MAX_SIDE = 2048  # our bound on the longer side before any processor sees the image
# Chosen in notebook 01: ChartQA charts (~800x600, ~600 tokens) pass untouched; outliers are capped at 1024 tokens.
CHARTQA_MAX_PIXELS = 1024 * QWEN2VL_FACTOR**2


def qwen2vl_resized_size(height: int, width: int, min_pixels: int = QWEN2VL_MIN_PIXELS,
                         max_pixels: int = QWEN2VL_MAX_PIXELS) -> tuple[int, int]:
    """Return the (height, width) Qwen2-VL's processor resizes an image to: multiples of 28 within the pixel bounds."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.0f} exceeds {MAX_ASPECT_RATIO}")
    f = QWEN2VL_FACTOR
    h, w = round(height / f) * f, round(width / f) * f  # round() as in Python: halves go to even
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h, w = max(f, math.floor(height / scale / f) * f), max(f, math.floor(width / scale / f) * f)
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * scale / f) * f, math.ceil(width * scale / f) * f
    return h, w


def qwen2vl_image_tokens(height: int, width: int, min_pixels: int = QWEN2VL_MIN_PIXELS,
                         max_pixels: int = QWEN2VL_MAX_PIXELS) -> int:
    """Return the number of <|image_pad|> tokens Qwen2-VL's processor emits for one image of this size."""
    h, w = qwen2vl_resized_size(height, width, min_pixels, max_pixels)
    return (h // QWEN2VL_FACTOR) * (w // QWEN2VL_FACTOR)


def idefics2_image_tokens(do_image_splitting: bool, image_seq_len: int = 64) -> int:
    """Return the number of <image> tokens Idefics2 emits per image: 64, or 5 crops x 64 with splitting."""
    return image_seq_len * (5 if do_image_splitting else 1)


# Idefics2's image processor: longest edge at most 980 px, each side at least 378 px; SigLIP cuts 14x14-px patches.
IDEFICS2_LONGEST_EDGE, IDEFICS2_SHORTEST_EDGE, IDEFICS2_PATCH = 980, 378, 14


def idefics2_resized_size(height: int, width: int) -> tuple[int, int]:
    """Return the (height, width) Idefics2's processor resizes an image to: longer side <= 980, each side >= 378."""
    longest, aspect = IDEFICS2_LONGEST_EDGE, width / height
    if width >= height and width > longest:
        height, width = int(longest / aspect), longest
    elif height > width and height > longest:
        height, width = longest, int(longest * aspect)
    return max(height, IDEFICS2_SHORTEST_EDGE), max(width, IDEFICS2_SHORTEST_EDGE)


def idefics2_patches(height: int, width: int, do_image_splitting: bool = False) -> int:
    """Return the patches Idefics2's vision tower sees per image (with splitting: 5 crops, each padded to full size)."""
    h, w = idefics2_resized_size(height, width)
    return (h // IDEFICS2_PATCH) * (w // IDEFICS2_PATCH) * (5 if do_image_splitting else 1)


def image_tokens(config: Any, height: int, width: int, max_pixels: int = CHARTQA_MAX_PIXELS,
                 do_image_splitting: bool = False) -> tuple[int, int]:
    """(tokens the language model sees, patches the vision tower sees) for one image of this size, per `config`."""
    if config.model_type == "qwen2_vl":
        tokens = qwen2vl_image_tokens(height, width, max_pixels=max_pixels)
        return tokens, tokens * config.vision_config.spatial_merge_size**2
    tokens = idefics2_image_tokens(do_image_splitting, config.perceiver_config.resampler_n_latents)
    return tokens, idefics2_patches(height, width, do_image_splitting)


def pixel_bytes(config: Any, patches: int) -> int:
    """fp32 `pixel_values` of one image: Qwen2-VL flattens 2x14x14x3 values per patch, Idefics2 keeps the pixels."""
    if config.model_type == "qwen2_vl":
        v = config.vision_config
        return patches * v.temporal_patch_size * v.patch_size**2 * v.in_channels * 4
    return patches * IDEFICS2_PATCH**2 * (3 * 4 + 1)  # fp32 RGB + the bool pixel attention mask


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency goes onto white, 16-bit and float images are rescaled."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(image, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.round().astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


# Our bound on the shorter side: Idefics2 splits images in halves, and a 1-pixel side halves to nothing.
MIN_SIDE = 8


def bound_size(image: Image.Image, max_side: int = MAX_SIDE, min_side: int = MIN_SIDE) -> Image.Image:
    """Scale into `min_side`..`max_side`, aspect kept and never more elongated (integer rounding toward the ratio)."""
    w, h = image.size
    long, short = max(w, h), min(w, h)
    if long > max_side:  # the shorter side rounds up
        new_long, new_short = max_side, max(1, -(-short * max_side // long))
    elif short < min_side:  # the longer side rounds down
        new_long, new_short = long * min_side // short, min_side
    else:
        return image
    size = (new_long, new_short) if w >= h else (new_short, new_long)
    return image.resize(size, Image.Resampling.BICUBIC)


def prepare_image(image: Image.Image, max_side: int = MAX_SIDE, min_side: int = MIN_SIDE) -> Image.Image:
    """RGB, scaled into the side bounds, and not too elongated for the processors; raises ValueError otherwise."""
    w, h = image.size
    if min(w, h) < 1:
        raise ValueError(f"unusable image size {w}x{h} (empty)")
    if max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
        raise ValueError(f"unusable image size {w}x{h} (aspect ratio {max(w, h) / min(w, h):.1f} > {MAX_ASPECT_RATIO}, "
                         "which Qwen2-VL's processor refuses)")
    return bound_size(to_rgb(image), max_side, min_side)

