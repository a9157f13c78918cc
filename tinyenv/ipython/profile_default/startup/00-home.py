# Loaded by every notebook kernel started inside tools/tiny-env: the kernel works in the environment's home, whose
# runs/ folder stands in for Drive and AMBER/ for /content/AMBER.
import os

os.chdir(os.environ["TINY_ENV_HOME"])
del os
