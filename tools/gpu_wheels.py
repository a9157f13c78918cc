"""Download into .whl/ the wheels the GPU runner lacks, at the versions installed in .venv (what CI tests).

The runner (Python 3.12, x86-64, torch preinstalled, no package index) has torch, accelerate and many common packages,
but not trl, bitsandbytes, datasets or the notebook stack; transformers, peft and tokenizers are there
at other versions, so ours travel too. bitsandbytes keeps only its CUDA 13.0 and CPU libraries (the runner's torch is
cu130): the full wheel (43 MB) would not fit the 64 MiB a call may carry.
Usage: .venv/bin/python tools/gpu_wheels.py [bench|notebooks]     (then see benchmarks/README.md)
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

# Read off the runner's image (the device tool's KINDS.md, 2026-11-17)
RUNNER_HAS = set("""absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs certifi
charset-normalizer click cloudpickle colorama contourpy coverage cycler filelock fonttools frozenlist fsspec h11 h5py
hf-xet httpcore httpx huggingface-hub idna iniconfig jinja2 joblib kiwisolver lxml markdown markdown-it-py markupsafe
matplotlib mdurl ml-dtypes mpmath msgpack multidict networkx ninja numpy nvidia-ml-py opencv-python-headless packaging
pandas pathspec pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow py-cpuinfo pygments
pyparsing pytest pytest-timeout python-dateutil pyyaml regex requests rich safetensors scipy sentencepiece setuptools
shellingham six sortedcontainers sympy tabulate tqdm torch torchvision triton typer typing-extensions urllib3
uvloop werkzeug wheel wrapt xxhash yarl zipp hypothesis""".split())
OURS = {"transformers", "peft", "tokenizers"}  # on the runner at other versions
SKIP = {"av"}  # a video decoder (36 MB) some VLM helpers pull in; the cookbook passes images only
ROOTS = {"bench": ["trl", "bitsandbytes", "datasets", "transformers", "peft", "tokenizers"],
         "notebooks": ["trl", "bitsandbytes", "datasets", "transformers", "peft", "tokenizers", "trackio",
                       "nbval", "ipykernel", "ipywidgets", "nbclient", "nbformat"]}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "any"]
LIMIT = 60 * 2**20  # of the 64 MiB a call carries, the repository itself takes about 3


def norm(name: str) -> str:
    """PEP 503 name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> dict[str, str]:
    """{name: installed version} of `roots` and their dependencies the runner lacks, for Python 3.12 on Linux."""
    env = default_environment() | {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux"}
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = norm(todo.pop())
        if name in found or name in SKIP or (name in RUNNER_HAS and name not in OURS):
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # not needed by what .venv runs (an optional dependency)
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(env | {"extra": ""}):
                todo.append(req.name)
    return found


def slim_bitsandbytes(wheel: Path) -> None:
    """Keep the CPU and CUDA 13.0 libraries of a bitsandbytes wheel (pip does not check RECORD hashes)."""
    keep = re.compile(r"libbitsandbytes_(cpu|cuda130)\.so$")
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if not item.filename.endswith(".so") or keep.search(item.filename):
                dst.writestr(item, src.read(item.filename))
    slim.replace(wheel)


def main() -> None:
    """Download, slim, check the size."""
    group = sys.argv[1] if len(sys.argv) > 1 else "bench"
    out = Path(".whl")
    for old in out.glob("*.whl"):
        old.unlink()
    pins = [f"{n}=={v}" for n, v in sorted(closure(ROOTS[group]).items())]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(out), *pins],
                   check=True)
    for wheel in out.glob("bitsandbytes-*.whl"):
        slim_bitsandbytes(wheel)
    total = sum(w.stat().st_size for w in out.glob("*.whl"))
    print(f"{len(pins)} wheels, {total / 2**20:.1f} MiB: {' '.join(pins)}")
    if total > LIMIT:
        raise SystemExit(f"over {LIMIT / 2**20:.0f} MiB: the device tool would refuse the call")


if __name__ == "__main__":
    main()
