"""Image hygiene (any PIL mode to bounded RGB) and image-token arithmetic of every model in the swap matrix."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

# Hub defaults of Qwen2-VL-*-Instruct (preprocessor_config.json).
QWEN2VL_MIN_PIXELS = 3136
QWEN2VL_MAX_PIXELS = 12_845_056
QWEN2VL_FACTOR = 28  # patch_size 14 x merge_size 2: one <|image_pad|> token per 28x28 pixels
QWEN2VL_MAX_ASPECT_RATIO = 200  # Qwen2-VL's processor (smart_resize) refuses more elongated images
MAX_SIDE = 2048  # our bound on the longer side before any processor sees the image
# Our bound on elongation (~73): bounded to MAX_SIDE, an image keeps a shorter side of one row of Qwen2-VL's image
# tokens. More elongated ones end thinner (4000x20 -> 2048x11), and smart_resize rounds a side under 15 px to no row
# and scales the whole image down to its 3136-px minimum (2048x11 -> 784x28: 28 tokens for 2048 px of content).
MAX_ASPECT_RATIO = MAX_SIDE / QWEN2VL_FACTOR
# Chosen in notebook 01: ChartQA charts (~800x600, ~600 tokens) pass untouched; outliers are capped at 1024 tokens.
CHARTQA_MAX_PIXELS = 1024 * QWEN2VL_FACTOR**2
QWEN_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")  # one token per (patch x merge)^2 px, within pixel bounds


def qwen2vl_resized_size(height: int, width: int, min_pixels: int = QWEN2VL_MIN_PIXELS,
                         max_pixels: int = QWEN2VL_MAX_PIXELS, f: int = QWEN2VL_FACTOR) -> tuple[int, int]:
    """Return the (height, width) a Qwen-VL processor resizes an image to: multiples of `f` px (28 for Qwen2-VL and
    Qwen2.5-VL, 32 for Qwen3-VL) within the pixel bounds (transformers' `smart_resize`)."""
    if max(height, width) / min(height, width) > QWEN2VL_MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.0f} exceeds "
                         f"{QWEN2VL_MAX_ASPECT_RATIO}")
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
    ratio = max(w, h) / min(w, h)
    if ratio > QWEN2VL_MAX_ASPECT_RATIO:
        raise ValueError(f"unusable image size {w}x{h} (aspect ratio {ratio:.1f} > {QWEN2VL_MAX_ASPECT_RATIO}, "
                         "which Qwen2-VL's processor refuses)")
    if ratio > max_side / QWEN2VL_FACTOR:  # MAX_ASPECT_RATIO at the default max_side
        raise ValueError(f"unusable image size {w}x{h} (aspect ratio {ratio:.1f} > {max_side / QWEN2VL_FACTOR:.1f}, "
                         f"the most a {max_side}-px image can have and keep a {QWEN2VL_FACTOR}-px shorter side: one "
                         "row of Qwen2-VL's image tokens)")
    return bound_size(to_rgb(image), max_side, min_side)


# --- Image-token arithmetic of the model-swap matrix (Qwen2.5-VL, Qwen3-VL, Gemma 3, SmolVLM2) ---
# SmolVLM2's image processor (preprocessor_config.json): longest edge resized to 1536 px, split into 384-px crops.
SMOLVLM_LONGEST_EDGE, SMOLVLM_CROP = 1536, 384
QWEN3VL_MIN_PIXELS = 65_536  # Qwen3-VL's hub lower bound (64 tokens of 32x32 px); Qwen2.5-VL keeps Qwen2-VL's 3136


def qwen_vl_image_tokens(height: int, width: int, patch_size: int = 14, merge_size: int = 2,
                         min_pixels: int = QWEN2VL_MIN_PIXELS, max_pixels: int = QWEN2VL_MAX_PIXELS) -> int:
    """Return the image tokens of any Qwen-VL processor: one per (patch x merge)^2 pixels, within the pixel bounds."""
    f = patch_size * merge_size
    h, w = qwen2vl_resized_size(height, width, min_pixels, max_pixels, f)
    return (h // f) * (w // f)


def smolvlm_crops(height: int, width: int, do_image_splitting: bool = True, longest_edge: int = SMOLVLM_LONGEST_EDGE,
                  crop: int = SMOLVLM_CROP) -> int:
    """Return the 384-px images SmolVLM2's processor makes of one image: rows x cols crops + 1 global view, or 1.

    With splitting, the longer side is first resized to `longest_edge` (up or down, the shorter side rounded to even),
    then both sides up to multiples of `crop`; an image that ends within one crop is not split.
    """
    if not do_image_splitting:
        return 1
    if width >= height:
        h, w = int(longest_edge / (width / height)), longest_edge
        h += h % 2
    else:
        h, w = longest_edge, int(longest_edge * (width / height))
        w += w % 2
    rows, cols = math.ceil(h / crop), math.ceil(w / crop)
    return rows * cols + 1 if rows * cols > 1 else 1


def image_tokens(config: Any, height: int, width: int, max_pixels: int | None = None,
                 do_image_splitting: bool | None = None) -> tuple[int, int]:
    """(tokens the language model sees, patches the vision tower sees) for one image of this size, per `config`.

    Unset options are the recipes' (`helpers.models.MODELS`): Qwen-family images capped at 1,024 tokens (28 or 32 px
    each), idefics2 without image splitting, SmolVLM2 with its hub splitting. Gemma 3 always sees one 896-px image
    (no pan-and-scan); SmolVLM2's tokens are crops x 81 `<image>` tokens (its ~2 row/column markers a crop are text).
    """
    v = config.vision_config
    if config.model_type in QWEN_TYPES:
        side = v.patch_size * v.spatial_merge_size
        low = QWEN3VL_MIN_PIXELS if config.model_type == "qwen3_vl" else QWEN2VL_MIN_PIXELS
        tokens = qwen_vl_image_tokens(height, width, v.patch_size, v.spatial_merge_size, low,
                                      1024 * side**2 if max_pixels is None else max_pixels)
        return tokens, tokens * v.spatial_merge_size**2
    if config.model_type == "gemma3":
        return config.mm_tokens_per_image, (v.image_size // v.patch_size) ** 2
    if config.model_type == "smolvlm":
        patches = smolvlm_crops(height, width, do_image_splitting is not False) * (v.image_size // v.patch_size) ** 2
        return patches // config.scale_factor**2, patches
    split = bool(do_image_splitting)  # idefics2
    tokens = idefics2_image_tokens(split, config.perceiver_config.resampler_n_latents)
    return tokens, idefics2_patches(height, width, split)


def pixel_bytes(config: Any, patches: int) -> int:
    """fp32 `pixel_values` of one image, from the vision tower's patch count: the Qwen family flattens temporal x p x p
    x 3 values per patch; the SigLIP models keep whole crops' pixels (idefics2 and SmolVLM2 with a bool pixel mask)."""
    v = config.vision_config
    if config.model_type in QWEN_TYPES:
        return patches * v.temporal_patch_size * v.patch_size**2 * 3 * 4
    if config.model_type in ("gemma3", "smolvlm"):
        crop_pixels = v.image_size**2 * patches // (v.image_size // v.patch_size) ** 2  # whole crops
        return crop_pixels * 3 * 4 + (crop_pixels if config.model_type == "smolvlm" else 0)
    return patches * IDEFICS2_PATCH**2 * (3 * 4 + 1)  # idefics2: fp32 RGB + the bool pixel attention mask
