"""A bitsandbytes 0.50.2 CPU bug, worked around for tiny runs (on a GPU, as on Colab, the code path does not exist).

On CPUs with AVX512-BF16, a 4-bit layer's weight is repacked for a faster kernel at its first inference forward and is
never unpacked: a later training forward of the same model (notebook 03 generates with the base model, then trains it)
takes that inference kernel, which gives the input no gradient and adds the bias in place, which autograd refuses.
`install()` makes a forward that needs gradients unpack the layer first, with bitsandbytes' own inverse.
"""

from __future__ import annotations

from typing import Any


def needs_unpacking(layer: Any, x: Any) -> bool:
    """True when `layer` holds the inference-packed weight and this forward trains (bitsandbytes' own test, inverted)."""
    packed = getattr(getattr(layer.weight, "quant_state", None), "packing_format_for_cpu", False)
    return bool(packed) and (layer.training or x.requires_grad)


def install() -> None:
    """Patch `bnb.nn.Linear4bit.forward` in this process (no-op without bitsandbytes, or if already done)."""
    try:
        import bitsandbytes as bnb
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    except ImportError:
        return
    original = bnb.nn.Linear4bit.forward
    if getattr(original, "unpacks_for_training", False):
        return

    def forward(self: Any, x: Any) -> Any:
        if needs_unpacking(self, x):
            self.weight.data, self.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                self.weight.data, self.weight.quant_state)
        return original(self, x)

    forward.unpacks_for_training = True  # type: ignore[attr-defined]
    forward.original = original  # type: ignore[attr-defined]
    bnb.nn.Linear4bit.forward = forward
