#!/usr/bin/env python
"""Export a checkpoint to ONNX and check onnxruntime against MXNet.

    python export.py --help
"""
import sys

from alexnet_mxnet.console import export

if __name__ == '__main__':
    sys.exit(export())
