#!/usr/bin/env python
"""Score a checkpoint on a .rec file: top-1/top-5, per-class accuracy, confusion matrix.

    python score.py --help
"""
import sys

from alexnet_mxnet.console import score

if __name__ == '__main__':
    sys.exit(score())
