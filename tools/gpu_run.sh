#!/usr/bin/env bash
# On the GPU runner: install the carried wheels (.whl/, made here by `make gpu-wheels`) into /tmp/site, then run "$@"
# with them first on the path (the runner's own torch stays). Example, through the device tool with carry [".whl"]:
#   bash tools/gpu_run.sh tools/tiny-env python3 benchmarks/train_throughput.py --method sft --out $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
python3 -c "import torch, transformers, trl, peft; print('gpu:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, '| peft', peft.__version__)"
exec "$@"
