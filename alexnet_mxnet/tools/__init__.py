"""Tools beside training and inference: the per-layer model summary and the distributed-job launcher."""
