# Notebook kernels inside tools/tiny-env show figures inline, as Jupyter's and Colab's kernels do: tools/tiny-env sets
# MPLBACKEND=Agg for scripts, which a kernel would inherit (ipykernel picks the inline backend only when it is unset).
import os

os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
del os
