"""What a training run records, on rank 0: checkpoint, optimizer state, metrics CSV, best
copy, sidecar and curve plot, each epoch, all-or-nothing."""
import csv
import json
import os
import platform

import mxnet as mx

import alexnet_mxnet

from alexnet_mxnet.base import checkpoint as ckpt
from alexnet_mxnet.base.checkpoint import curves_path, metrics_path
from alexnet_mxnet.base.cli import describe_os_error
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.files import atomic_write, write_csv
from alexnet_mxnet.train.callbacks import LOG
from alexnet_mxnet.train.ema import ema_params_path, mark_best_ema, remove_ema_epochs
from alexnet_mxnet.train.mixing import what_train_metrics_measure

# val_ema_*: the average of the weights (--model-ema) on the same validation images.
CSV_FIELDS = ('epoch', 'train_top1', 'train_topk', 'train_loss', 'val_top1', 'val_topk',
              'val_loss', 'val_ema_top1', 'val_ema_topk', 'val_ema_loss', 'lr',
              'images_per_sec', 'epoch_seconds', 'wall_seconds')


def state_copies(run, module):
    """How many copies of the optimizer state the updater keeps (one per device unless the
    kvstore updates): a ``.states`` file only fits a run with the same count."""
    return 1 if module._update_on_kvstore else len(run.contexts)


def config_of(args):
    """Every flag of the run as JSON values (tuples as lists), as the sidecar records it."""
    return json.loads(json.dumps(vars(args), default=str))


def versions():
    """What made a checkpoint: this package, MXNet and Python."""
    return {'alexnet_mxnet': alexnet_mxnet.__version__, 'mxnet': mx.__version__,
            'python': platform.python_version()}


def can_save_states(run):
    return run.kv is None or 'dist' not in run.kv.type


def read_metrics_csv(path, up_to_epoch):
    """Rows 1..``up_to_epoch`` of an earlier run (kept when resuming); none without the file.
    A damaged file is refused in one line: its rows decide the best epoch."""
    try:
        with open(path, newline='') as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        return []
    except (csv.Error, UnicodeDecodeError) as err:
        raise _damaged_csv(path, err) from None
    kept = []
    for line, row in enumerate(rows, 2):
        try:
            epoch = int(row['epoch'])
            for key in CSV_FIELDS[1:]:
                if row.get(key):
                    float(row[key])
        except (KeyError, TypeError, ValueError):
            raise _damaged_csv(path, 'line %d is not a row of numbers' % line) from None
        if epoch <= up_to_epoch:
            kept.append(row)
    epochs = [int(row['epoch']) for row in kept]
    if epochs != list(range(1, up_to_epoch + 1)):
        missing = sorted(set(range(1, up_to_epoch + 1)) - set(epochs))
        raise _damaged_csv(path, 'no row for epoch %s' % missing[0] if missing
                           else 'epochs out of order or repeated')
    return kept


def _damaged_csv(path, why):
    return UsageError('%s is damaged (%s); restore it, or delete it to resume without the '
                      'history of earlier epochs' % (path, why))


def write_metrics_csv(path, rows):
    write_csv(path, CSV_FIELDS, [['' if row.get(k) is None else row[k] for k in CSV_FIELDS]
                                 for row in rows])


def plot_curves(path, rows, top_k=5):
    """Accuracy and loss against epoch, as a PNG (matplotlib's Agg backend: no display)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    def series(key):
        pts = [(int(r['epoch']), float(r[key])) for r in rows if r.get(key) not in (None, '')]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (('train_top1', 'train top-1'), ('val_top1', 'val top-1'),
                       ('val_ema_top1', 'val top-1, weights averaged'),
                       ('train_topk', 'train top-%d' % top_k), ('val_topk', 'val top-%d' % top_k)):
        xs, ys = series(key)
        if xs:
            acc_ax.plot(xs, ys, marker='o', label=label)
    for key, label in (('train_loss', 'train'), ('val_loss', 'val'),
                       ('val_ema_loss', 'val, weights averaged')):
        xs, ys = series(key)
        if xs:
            loss_ax.plot(xs, ys, marker='o', label=label)
    acc_ax.set(xlabel='epoch', ylabel='accuracy', title='accuracy', ylim=(0, 1))
    loss_ax.set(xlabel='epoch', ylabel='cross-entropy', title='loss')
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=80))
    plt.close(fig)


class Recorder(object):
    """Rank 0's per-epoch files: checkpoint, optimizer state, CSV, best copy, sidecar, plot.

    A checkpoint is recorded all-or-nothing: its entry in the sidecar is written after every
    other file of the epoch, and only then are old epochs pruned, so a save cut short (a
    second Ctrl-C, a full disk, a kill) leaves the previous checkpoints as they were and an
    epoch the sidecar does not list, which every reader treats as absent."""

    def __init__(self, run, start_epoch):
        self.run = run
        args = run.args
        self.rows = run.rows
        checkpoints = {k: v for k, v in run.meta.get('checkpoints', {}).items()
                       if int(k) <= start_epoch}
        self.meta = dict(
            network=args.network, num_classes=args.num_classes,
            image_shape=list(run.image_shape), mean_rgb=list(args.rgb_mean),
            std_rgb=list(args.rgb_std) if args.rgb_std else None,
            class_names=run.class_names, dtype=args.dtype, optimizer=args.optimizer.lower(),
            epoch=start_epoch, best_epoch=None, best_val_top1=None, best_weights=None,
            checkpoints=checkpoints,
            batch_size=args.batch_size, pretrained=args.pretrained or run.meta.get('pretrained'),
            train_metrics=what_train_metrics_measure(args), config=config_of(args),
            versions=versions())
        self.meta.update(_best_of(self.rows))
        if run.writes and start_epoch:
            self._restore_best(start_epoch)
            # From now on the run continues from start_epoch: the record says so at once, so
            # a later epoch left on disk is no longer the run's latest, even if this run
            # stops before its first save.
            if self.rows:           # (a run copied without its CSV has none to cut)
                write_metrics_csv(metrics_path(run.prefix), self.rows)
            ckpt.write_sidecar(run.prefix, self.meta)

    def _restore_best(self, start_epoch):
        """On resume, ``P-best.params`` goes back to the best epoch up to ``start_epoch``: a
        later epoch of the run being continued, or a save cut short before its sidecar
        entry, may have replaced it."""
        prefix, best = self.run.prefix, self.meta['best_epoch']
        if best is not None and os.path.isfile(_best_source(prefix, best,
                                                            self.meta['best_weights'])):
            _mark_best(prefix, best, self.meta['best_weights'])
            return
        stale = ckpt.best_params_path(prefix)
        if os.path.exists(stale):
            os.remove(stale)
            LOG.warning('removed %s: it held weights of a later epoch than %d, and %s',
                            stale, start_epoch, 'no earlier epoch was validated' if best is None
                            else 'epoch %d (the best up to %d) was pruned' % (best, start_epoch))

    @property
    def wall_seconds(self):
        return float(self.rows[-1]['wall_seconds']) if self.rows else 0.0

    def why_nothing_saved(self):
        if self.run.rank != 0:
            return 'nothing saved: rank 0 writes the checkpoints'
        return 'nothing saved (--benchmark without --model-prefix)'

    def resume_hint(self):
        """Which checkpoint is complete and how to continue from it."""
        latest = ckpt.latest_epoch(self.run.prefix)
        if latest is None:
            return 'no checkpoint of this run is complete yet'
        return ('checkpoint %d is complete: resume with --model-prefix %s --load-epoch %d'
                % (latest, self.run.prefix, latest))

    def save(self, module, epoch, row, num_update, batches, partial, check=lambda: None,
             ema=None):
        """Record checkpoint ``epoch`` (``check()`` between files may raise to abort), with
        the average of the weights ``ema`` (a ``ModelEMA``) when the run keeps one; returns
        whether this process wrote it. A file-system failure is one line saying which
        checkpoint is still complete."""
        run = self.run
        if not run.writes:
            return False
        try:
            arg_params, aux_params = module.get_params()
            ckpt.save_checkpoint(run.prefix, epoch, run.symbol, arg_params, aux_params)
            check()
            if ema is not None:
                ema.save(ema_params_path(run.prefix, epoch))
                check()
            if can_save_states(run):
                ckpt.save_optimizer_states(module, run.prefix, epoch)
                check()
            rows = [r for r in self.rows if int(r['epoch']) < epoch] + [row]
            write_metrics_csv(metrics_path(run.prefix), rows)
            check()
            meta = dict(self.meta, epoch=epoch, checkpoints=dict(self.meta['checkpoints']),
                        **_best_of(rows))
            meta['checkpoints'][str(epoch)] = dict(
                num_update=num_update, batches=batches, partial=partial,
                state_copies=state_copies(run, module))
            if ema is not None:
                meta['checkpoints'][str(epoch)]['ema'] = os.path.basename(
                    ema_params_path(run.prefix, epoch))
            if meta['best_epoch'] == epoch:
                _mark_best(run.prefix, epoch, meta['best_weights'])
                check()
            pruned = ckpt.epochs_to_prune(run.prefix, epoch, run.args.keep_checkpoints,
                                          spare=_restore_point(rows, epoch, run.args))
            for old in pruned:
                meta['checkpoints'].pop(str(old), None)
            ckpt.write_sidecar(run.prefix, meta)      # from here on, the checkpoint is recorded
        except OSError as err:
            raise UsageError('could not save checkpoint %d: %s; %s' % (
                epoch, describe_os_error(err), self.resume_hint())) from None
        self.rows, self.meta = rows, meta
        ckpt.remove_epochs(run.prefix, pruned)
        remove_ema_epochs(run.prefix, pruned)
        plot_curves(curves_path(run.prefix), rows, run.args.top_k)
        return True


def _best_of(rows):
    """``best_epoch``/``best_val_top1`` of the validated rows (the earliest on a tie), and
    ``best_weights``: ``'ema'`` when that epoch's average of the weights validated better
    than its raw weights, else ``'raw'``."""
    scored = [(_score(r, 'val_top1'), _score(r, 'val_ema_top1'), int(r['epoch'])) for r in rows
              if r.get('val_top1') not in (None, '')]
    if not scored:
        return dict(best_epoch=None, best_val_top1=None, best_weights=None)
    raw, ema, epoch = max(scored, key=lambda s: (max(s[0], s[1]), -s[2]))
    return dict(best_epoch=epoch, best_val_top1=max(raw, ema),
                best_weights='ema' if ema > raw else 'raw')


def _score(row, key):
    return float(row[key]) if row.get(key) not in (None, '') else -1.0


def _best_source(prefix, epoch, weights):
    return ema_params_path(prefix, epoch) if weights == 'ema' else ckpt.params_path(prefix, epoch)


def _mark_best(prefix, epoch, weights):
    """``P-best.params``: the weights of ``epoch`` that validated best, raw or averaged."""
    if weights == 'ema':
        mark_best_ema(prefix, epoch)
    else:
        ckpt.mark_best(prefix, epoch)


def _restore_point(rows, epoch, args):
    """The epoch ``P-best.params`` must be restored from when the oldest epoch kept after
    saving ``epoch`` is resumed: pruning spares it, so every kept epoch can be resumed."""
    oldest = epoch - args.keep_checkpoints + 1
    return _best_of([r for r in rows if int(r['epoch']) <= oldest])['best_epoch']


def row_of(epoch, train, val, lr, images, seconds, wall, val_ema=None):
    row = dict(epoch=epoch, train_top1=round(train['top1'], 5), train_loss=round(train['loss'], 5),
               lr=lr, images_per_sec=round(images / max(seconds, 1e-9), 2),
               epoch_seconds=round(seconds, 2), wall_seconds=round(wall, 2))
    if train['topk'] is not None:
        row['train_topk'] = round(train['topk'], 5)
    for prefix, scores in (('val_', val), ('val_ema_', val_ema)):
        if scores:
            row.update({prefix + 'top1': round(scores['top1'], 5),
                        prefix + 'loss': round(scores['loss'], 5)})
            if scores['topk'] is not None:
                row[prefix + 'topk'] = round(scores['topk'], 5)
    return row
