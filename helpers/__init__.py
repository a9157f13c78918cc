"""Helpers shared by the vlm-cookbook notebooks; each module is one concern (see README)."""
