"""Training engine: contexts, kvstore, Module fitting, callbacks, checkpoints.

Kept import-light on purpose: ``symbols`` and ``iterators`` import
``engine.errors`` without pulling in the training loop.
"""
