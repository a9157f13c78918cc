# Loaded by every notebook kernel the tests and `make cookbook` start: the bitsandbytes CPU workaround of tests/bnb_cpu.py.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import bnb_cpu  # noqa: E402

bnb_cpu.install()
del sys.path[0]
