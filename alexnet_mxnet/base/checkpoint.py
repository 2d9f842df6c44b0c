"""Checkpoint files, written atomically, in the layout stock MXNet reads.

A run with prefix ``P`` leaves ``P-symbol.json`` and ``P-NNNN.params`` (what
``mx.model.load_checkpoint`` and ``mx.mod.Module.load`` read) and the sidecar
``P-meta.json``: the single source of what scoring, prediction and export need
(network, image shape, mean/std, class names), and of which epochs are complete checkpoints.
"""
import glob
import json
import os
import pickle
import re
import shutil

import mxnet as mx

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.files import atomic_write, probe_folder, remove_quietly, write_text

SIDECAR_SUFFIX = '-meta.json'
_EPOCH_FILE = re.compile(r'-(\d{4,})\.params$')
# Every file a run at prefix P writes is P-<one of these>; ``atomic_write`` writes each first
# to a hidden ``.P-<name>.<random>.tmp`` beside it.
_RUN_FILE = (r'(?:symbol\.json|\d{4,}\.params|\d{4,}\.states|meta\.json|metrics\.csv|curves\.png'
             r'|best\.params)')
_PROBE = 'probe'


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


def metrics_path(prefix):
    return prefix + '-metrics.csv'


def curves_path(prefix):
    return prefix + '-curves.png'


def load_checkpoint(prefix, epoch):
    """``(symbol, arg_params, aux_params)``, with one-line errors for missing or damaged files."""
    for path in (symbol_path(prefix), params_path(prefix, epoch)):
        if not os.path.isfile(path):
            raise UsageError('checkpoint file %s not found' % path)
    try:
        return mx.model.load_checkpoint(prefix, epoch)
    except mx.base.MXNetError:
        raise UsageError('checkpoint %s or %s cannot be read: truncated or damaged; resume from '
                         'another epoch' % (params_path(prefix, epoch), symbol_path(prefix))
                         ) from None


def write_sidecar(prefix, meta):
    """Write the JSON sidecar. Keys: network, num_classes, image_shape [C,H,W],
    mean_rgb [3], std_rgb [3] or None, class_names [..] or None, dtype, and the
    training state the trainer adds (epoch, best_epoch, best_val_top1, checkpoints, config)."""
    write_text(sidecar_path(prefix), json.dumps(meta, indent=2, sort_keys=True) + '\n')


def read_sidecar(prefix):
    """The sidecar dict, or ``{}`` when the checkpoint has none (e.g. made by stock MXNet)."""
    path = sidecar_path(prefix)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding='utf-8') as handle:
            meta = json.load(handle)
    except ValueError as err:      # UnicodeDecodeError too
        raise UsageError('checkpoint sidecar %s is not valid JSON: %s' % (path, err)) from None
    if not isinstance(meta, dict) or not isinstance(meta.get('checkpoints', {}), dict):
        raise UsageError('checkpoint sidecar %s is not the JSON object a training run writes: '
                         'restore the one it wrote, or remove it' % path)
    return meta


def states_path(prefix, epoch):
    return '%s-%04d.states' % (prefix, epoch)


def best_params_path(prefix):
    return '%s-best.params' % prefix


def check_optimizer_states(prefix, epoch):
    """Refuse, in one line, a ``P-NNNN.states`` that does not unpickle (cut short or damaged),
    before a run spends any work; a missing file is fine (the state then starts from zero)."""
    path = states_path(prefix, epoch)
    if not os.path.isfile(path):
        return
    with open(path, 'rb') as handle:
        data = handle.read()
    try:
        pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError, mx.base.MXNetError):
        raise UsageError('%s cannot be read: truncated or damaged; delete it to resume with the '
                         'optimizer state (momentum) reset, or resume from another epoch'
                         % path) from None


def save_optimizer_states(module, prefix, epoch):
    """``P-NNNN.states``: the optimizer state (e.g. momentum) that ``Module.load(...,
    load_optimizer_states=True)`` reads back."""
    atomic_write(states_path(prefix, epoch), module.save_optimizer_states)


def mark_best(prefix, epoch):
    """Copy ``P-NNNN.params`` to ``P-best.params`` (same format, loads with ``mx.nd.load``)."""
    source = params_path(prefix, epoch)
    atomic_write(best_params_path(prefix), lambda tmp: shutil.copyfile(source, tmp))


def epochs_to_prune(prefix, epoch, keep, spare=None):
    """The epochs up to ``epoch - keep`` (``keep=0``: none) that still have files, except
    ``spare``: what keeping the last ``keep`` epochs deletes."""
    if keep <= 0:
        return []
    return [old for old in range(1, epoch - keep + 1) if old != spare and any(
        os.path.exists(p) for p in (params_path(prefix, old), states_path(prefix, old)))]


def remove_epochs(prefix, epochs):
    """Delete the ``.params``/``.states`` of ``epochs``; ``P-best.params`` is a copy and stays."""
    for old in epochs:
        for path in (params_path(prefix, old), states_path(prefix, old)):
            remove_quietly(path)


def _files_named(prefix, pattern):
    folder, base = os.path.split(prefix)
    try:
        names = os.listdir(folder or '.')
    except (FileNotFoundError, NotADirectoryError):
        return []
    match = re.compile(pattern % re.escape(base)).fullmatch
    return sorted(os.path.join(folder, name) for name in names if match(name))


def run_files(prefix):
    """The files of the run at ``prefix`` (checkpoints, sidecar, metrics, plot, best copy,
    complete or not): what a new run there would overwrite."""
    return _files_named(prefix, r'%s-' + _RUN_FILE)


def temporary_files(prefix):
    """Hidden temporary files of writes to ``prefix`` that never finished (the writer was
    killed): up to a checkpoint's size each, and nothing else removes them."""
    return _files_named(prefix, r'\.%s-(?:' + _RUN_FILE + '|' + _PROBE + r')\.\w+\.tmp')


def remove_files(paths):
    for path in paths:
        remove_quietly(path)


def check_writable(prefix):
    """A probe file written beside ``prefix`` (``probe_folder``): ``OSError`` now, not when the
    first checkpoint is saved. Named like the run's temporaries, so a probe left by a kill is
    removed with them."""
    folder, base = os.path.split(os.path.abspath(prefix))
    probe_folder(folder, '%s-%s' % (base, _PROBE))


def free_bytes(prefix):
    """Bytes that may still be written in the folder of ``prefix``."""
    stat = os.statvfs(os.path.dirname(os.path.abspath(prefix)))
    return stat.f_bavail * stat.f_frsize


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


def read_params(path):
    """The named arrays of an MXNet ``.params`` file (``mx.nd.save``'s format), with one-line
    errors for a missing, damaged or empty file."""
    if not os.path.isfile(path):
        raise UsageError('weights file %s not found' % path)
    try:
        raw = mx.nd.load(path)
    except mx.base.MXNetError:
        raise UsageError('%s is not an MXNet .params file' % path) from None
    if not isinstance(raw, dict) or not raw:
        raise UsageError('%s holds no named parameters' % path)
    return raw


def split_params(raw):
    """``(arg_params, aux_params)`` of a checkpoint's arrays (``arg:``/``aux:`` names, as
    ``mx.model.save_checkpoint`` writes them), or None for a file named otherwise."""
    if not all(name.startswith(('arg:', 'aux:')) for name in raw):
        return None
    return ({k[4:]: v for k, v in raw.items() if k.startswith('arg:')},
            {k[4:]: v for k, v in raw.items() if k.startswith('aux:')})


def check_compatible(symbol, data_shape, arg_params, aux_params, source):
    """One-line error when loaded parameters do not fit the graph ``symbol``."""
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=data_shape)
    expected = dict(zip(symbol.list_arguments(), arg_shapes))
    expected.update(zip(symbol.list_auxiliary_states(), aux_shapes))
    for name, value in list(arg_params.items()) + list(aux_params.items()):
        if name not in expected:
            raise UsageError('%s has parameter %s, which this --network does not have'
                             % (source, name))
        if tuple(value.shape) != tuple(expected[name]):
            raise UsageError('%s has %s of shape %s but this network needs %s (check --network, '
                             '--num-classes and --image-shape)'
                             % (source, name, tuple(value.shape), tuple(expected[name])))
