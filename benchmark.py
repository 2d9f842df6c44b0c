#!/usr/bin/env python
"""Forward and forward+backward speed of a network on synthetic data.

    python benchmark.py --help
"""
import sys

from alexnet_mxnet.console import benchmark

if __name__ == '__main__':
    sys.exit(benchmark())
