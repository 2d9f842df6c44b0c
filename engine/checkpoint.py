"""Checkpoint files, written atomically, in the layout stock MXNet reads.

A run with prefix ``P`` leaves ``P-symbol.json`` and ``P-NNNN.params`` (what
``mx.model.load_checkpoint`` and ``mx.mod.Module.load`` read) and the sidecar
``P-meta.json``: the single source of what scoring, prediction and export need
(network, image shape, mean/std, class names).
"""
import glob
import json
import os
import re
import shutil
import tempfile

import mxnet as mx

from engine.errors import UsageError

SIDECAR_SUFFIX = '-meta.json'
_EPOCH_FILE = re.compile(r'-(\d{4,})\.params$')


def atomic_write(path, write):
    """Call ``write(tmp_path)``, then rename onto ``path``: readers never see half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=directory)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, 'rb') as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def params_path(prefix, epoch):
    return '%s-%04d.params' % (prefix, epoch)


def symbol_path(prefix):
    return '%s-symbol.json' % prefix


def sidecar_path(prefix):
    return prefix + SIDECAR_SUFFIX


def save_checkpoint(prefix, epoch, symbol, arg_params, aux_params):
    """Same files and format as ``mx.model.save_checkpoint``, each written atomically."""
    atomic_write(symbol_path(prefix), symbol.save)
    saved = {'arg:%s' % k: v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    saved.update({'aux:%s' % k: v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    atomic_write(params_path(prefix, epoch), lambda tmp: mx.nd.save(tmp, saved))


def load_checkpoint(prefix, epoch):
    """``(symbol, arg_params, aux_params)``, with one-line errors for missing files."""
    for path in (symbol_path(prefix), params_path(prefix, epoch)):
        if not os.path.isfile(path):
            raise UsageError('checkpoint file %s not found' % path)
    return mx.model.load_checkpoint(prefix, epoch)


def write_sidecar(prefix, meta):
    """Write the JSON sidecar. Keys: network, num_classes, image_shape [C,H,W],
    mean_rgb [3], std_rgb [3] or None, class_names [..] or None, dtype, and the
    training state the engine adds (epoch, best_epoch, best_val_top1)."""
    text = json.dumps(meta, indent=2, sort_keys=True)

    def write(tmp):
        with open(tmp, 'w') as handle:
            handle.write(text + '\n')
    atomic_write(sidecar_path(prefix), write)


def read_sidecar(prefix):
    """The sidecar dict, or ``{}`` when the checkpoint has none (e.g. made by stock MXNet)."""
    path = sidecar_path(prefix)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as handle:
            return json.load(handle)
    except ValueError as err:
        raise UsageError('checkpoint sidecar %s is not valid JSON: %s' % (path, err))


def states_path(prefix, epoch):
    return '%s-%04d.states' % (prefix, epoch)


def best_params_path(prefix):
    return '%s-best.params' % prefix


def save_optimizer_states(module, prefix, epoch):
    """``P-NNNN.states``: the optimizer state (e.g. momentum) that ``Module.load(...,
    load_optimizer_states=True)`` reads back."""
    atomic_write(states_path(prefix, epoch), module.save_optimizer_states)


def mark_best(prefix, epoch):
    """Copy ``P-NNNN.params`` to ``P-best.params`` (same format, loads with ``mx.nd.load``)."""
    source = params_path(prefix, epoch)
    atomic_write(best_params_path(prefix), lambda tmp: shutil.copyfile(source, tmp))


def prune_epochs(prefix, epoch, keep):
    """Delete the ``.params``/``.states`` of epochs up to ``epoch - keep`` (``keep=0``: none).
    Returns the epochs removed; ``P-best.params`` is a copy and stays."""
    removed = []
    if keep <= 0:
        return removed
    for old in range(1, epoch - keep + 1):
        paths = [p for p in (params_path(prefix, old), states_path(prefix, old)) if os.path.exists(p)]
        for path in paths:
            os.remove(path)
        if paths:
            removed.append(old)
    return removed


def recorded_epochs(prefix):
    """The epochs of the run at ``prefix`` that are complete checkpoints, ascending.

    A checkpoint is recorded all-or-nothing: its entry in the sidecar's ``checkpoints`` is
    written after its files, so an epoch is complete when the sidecar lists it and its
    ``.params`` exists. A ``.params`` the sidecar does not list is not part of the run (a
    save cut short, or an abandoned continuation after a resume from an earlier epoch).
    Without a sidecar (a stock MXNet checkpoint) every ``P-NNNN.params`` counts.
    """
    meta = read_sidecar(prefix)
    if 'checkpoints' in meta:
        listed = (int(epoch) for epoch in meta['checkpoints'])
        return sorted(e for e in listed if os.path.isfile(params_path(prefix, e)))
    found = (_EPOCH_FILE.search(path) for path in glob.glob(glob.escape(prefix) + '-*.params'))
    return sorted(int(m.group(1)) for m in found if m)


def latest_epoch(prefix):
    """The run's newest complete checkpoint (the sidecar's ``epoch`` when it is recorded), or
    None when there is none."""
    epochs = recorded_epochs(prefix)
    if not epochs:
        return None
    named = read_sidecar(prefix).get('epoch')
    return named if named in epochs else epochs[-1]
