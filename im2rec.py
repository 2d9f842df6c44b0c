#!/usr/bin/env python
"""Convert photo folders, .lst files or CIFAR-10 batches to RecordIO (.lst/.rec/.idx).

    python im2rec.py --help
"""
import sys

from alexnet_mxnet.console import im2rec

if __name__ == '__main__':
    sys.exit(im2rec())
