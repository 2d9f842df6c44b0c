"""Fine-tuning: the starting weights (``symbols.load_weights``) minus fc3, and how the
transferred layers train.

Only the last layer (``fc3``) is replaced for the new class count; ``fc1``/``fc2`` keep
their trained weights (the transferable part of AlexNet's classifier).
"""

HEAD = 'fc3'
FEATURE_LAYERS = ('conv', 'bn')


def without_head(arg_params):
    """Every parameter but ``fc3``'s, which the new class count re-initialises."""
    return {k: v for k, v in arg_params.items() if not k.startswith(HEAD + '_')}


def feature_params(symbol):
    """The convolutional (and BatchNorm) parameters: what ``--freeze-features`` fixes."""
    return [n for n in symbol.list_arguments() if n.startswith(FEATURE_LAYERS)]


def set_lr_mult(symbol, names, mult):
    """Tag parameters with ``__lr_mult__``, which every ``mx.optimizer`` reads from the graph
    (also on dist kvstore servers, unlike a multiplier set on the optimizer afterwards)."""
    internals = symbol.get_internals()
    for name in names:
        internals[name]._set_attr(__lr_mult__=str(mult))
