"""AlexNet image classification on MXNet's symbolic API: everything but the graphs (``symbols``)
and the input pipelines (``iterators``), in layers that import only downwards:

- ``base``: errors, command-line helpers, file I/O, locks, image files, devices, the
  checkpoint format -- nothing else of the project;
- ``data``: the converter to RecordIO and the demo data set (on ``base``);
- ``train`` and ``inference``, side by side (on ``symbols``, ``iterators``, ``data``);
- ``tools``: model summary and the distributed-job launcher;
- ``commands``: the command-line programs, and ``console``, their entry points.

Light to import: nothing here loads MXNet.
"""
import os

__version__ = '0.2.0'

# MXNet's oneDNN subgraph backend would log "Subgraph backend MKLDNN is activated." on every
# bind, training and inference alike.
os.environ.setdefault('MXNET_SUBGRAPH_VERBOSE', '0')
