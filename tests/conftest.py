"""Shared test configuration (must not import torch: the CLRS reference tests run without it)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # helper modules such as clrs_parity
