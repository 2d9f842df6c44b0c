"""One training step as ``fit`` runs it (and ``benchmarks/train_throughput.py`` times it)."""


def train_step(module, batch, metrics, monitor=None):
    """Forward, backward and the optimizer update of ``module`` on ``batch``, then the batch's
    outputs added to ``metrics`` (real rows only); returns the batch's mean loss."""
    if monitor:
        monitor.tic()
    module.forward_backward(batch)
    module.update()
    loss = metrics.update(module.get_outputs()[0].asnumpy(), batch.label[0].asnumpy(), batch.pad)
    if monitor:
        monitor.toc_print()
    return loss
