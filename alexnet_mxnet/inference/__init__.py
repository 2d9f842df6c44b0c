"""Using saved checkpoints: scoring, prediction, benchmarks, CPU fast paths and ONNX export.

Everything here reads a checkpoint (``P-symbol.json``, ``P-NNNN.params``) and its sidecar
``P-meta.json``; nothing depends on the training side.
"""
