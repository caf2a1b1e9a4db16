"""Train an agent on NATCell-v0: the same as ``nat-gym train`` (``--algo nat`` by default).

Usage: ``python scripts/train.py [--epochs 120] [--out runs/nat] [--resume] ...`` (``--help`` lists every flag).
"""

from __future__ import annotations

import sys

from agents.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
