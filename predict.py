#!/usr/bin/env python
"""Top-k classes of image files or folders with a checkpoint.

    python predict.py --help
"""
import sys

from alexnet_mxnet.console import predict

if __name__ == '__main__':
    sys.exit(predict())
