# Loaded by every notebook kernel the tests start (IPYTHONDIR points here): no network inside notebooks either.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import netguard  # noqa: E402

netguard.install()
del sys.path[0]
