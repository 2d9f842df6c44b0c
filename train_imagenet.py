#!/usr/bin/env python
"""Train AlexNet on RecordIO data with mx.mod.Module; without data flags, on the built-in digits demo.

    python train_imagenet.py --help
"""
import sys

from alexnet_mxnet.console import train

if __name__ == '__main__':
    sys.exit(train())
