"""Transform an architecture with a trained NAT policy: the same as ``nat-gym transform``.

Usage: ``python scripts/transform.py --arch DARTS_V2 --policy runs/nat/checkpoint.pt [--samples 10 | --argmax]
[--out runs/transform] [--seed 0]`` (``--help`` lists every flag).
"""

from __future__ import annotations

import sys

from agents.cli import main

if __name__ == "__main__":
    sys.exit(main(["transform", *sys.argv[1:]]))
