#!/usr/bin/env python
"""Start a distributed MXNet job: scheduler, servers and workers.

    python launch.py --help
"""
import sys

from alexnet_mxnet.console import launch

if __name__ == '__main__':
    sys.exit(launch())
