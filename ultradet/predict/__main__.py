"""``python -m ultradet.predict MODEL CLIP --out DIR``: the same as ``ultradet predict``."""

import sys

from ultradet.predict.cli import run

sys.exit(run(prog="python -m ultradet.predict"))
