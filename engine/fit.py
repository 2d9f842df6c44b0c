"""``fit(args)``: train a network with ``mx.mod.Module`` on every listed device.

The loop is written out (bind, init_params, init_optimizer, then forward_backward/update per
batch) rather than ``Module.fit`` so that it can show a progress bar, stop on a signal
after saving, catch a diverging loss, and exclude padded rows from every metric.

Epochs are numbered from 1 everywhere (bar, log lines, CSV, messages): epoch ``k`` ends by
writing ``P-000k.params``. Stopped by Ctrl-C/SIGTERM during epoch ``k``, the run saves the
state reached as ``P-000k.*`` marked ``partial`` in the sidecar; ``--load-epoch k`` then
continues with epoch ``k+1`` (``--load-epoch k-1`` repeats epoch ``k`` in full).
"""
import logging
import os
import signal
import time
from types import SimpleNamespace

import mxnet as mx
import numpy as np

import symbols
from engine import checkpoint as ckpt
from engine import finetune
from engine.args import resolve_defaults
from engine.callbacks import (Speedometer, StopRequest, TopKMetrics, check_finite, epoch_bar,
                              plot_curves, read_metrics_csv, setup_logging, write_metrics_csv)
from engine.data import demo_records, read_class_names
from engine.devices import check_batch_split, create_kvstore, get_contexts, worker_of
from engine.errors import UsageError
from engine.lr_schedule import create_initializer, create_scheduler, parse_epochs, updates_per_epoch

MOMENTUM_OPTIMIZERS = ('sgd', 'nag', 'signum', 'dcasgd', 'lbsgd')
# Synthetic data for --benchmark: this many batches per epoch unless --num-examples says.
BENCHMARK_BATCHES = 50


def metrics_path(prefix):
    return prefix + '-metrics.csv'


def curves_path(prefix):
    return prefix + '-curves.png'


def fit(args):
    """Train as ``args`` (``engine.args.build_train_parser`` flags) say. Returns a summary
    namespace: ``prefix``, ``epoch`` (last saved), ``rows`` (CSV rows), ``stopped_by``
    (signal name or None), ``module``."""
    setup_logging()
    run = prepare(args)
    if args.test_io:
        return measure_io(run)
    return train(run)


def _check_numbers(args):
    if args.num_epochs < 1:
        raise UsageError('--num-epochs must be at least 1, got %d' % args.num_epochs)
    if min(args.top_k, args.disp_batches, args.monitor, args.keep_checkpoints) < 0:
        raise UsageError('--top-k, --disp-batches, --monitor and --keep-checkpoints must be >= 0')
    if not 0 <= args.dropout < 1:
        raise UsageError('--dropout must be in [0, 1), got %g' % args.dropout)
    if args.wd < 0:
        raise UsageError('--wd must be >= 0, got %g' % args.wd)
    if args.num_examples is not None and args.num_examples < 1:
        raise UsageError('--num-examples must be positive, got %d' % args.num_examples)
    if args.optimizer.lower() not in mx.optimizer.Optimizer.opt_registry:
        raise UsageError('unknown --optimizer %r; choose one of %s' % (
            args.optimizer, ', '.join(sorted(mx.optimizer.Optimizer.opt_registry))))
    if args.load_epoch is not None:
        if args.pretrained:
            raise UsageError('give --load-epoch (resume) or --pretrained (fine-tune), not both')
        if not args.model_prefix:
            raise UsageError('--load-epoch needs the --model-prefix of the run to resume')
        if not 1 <= args.load_epoch < args.num_epochs:
            raise UsageError('--load-epoch must be in [1, --num-epochs=%d), got %d'
                             % (args.num_epochs, args.load_epoch))
    if (args.freeze_features or args.features_lr_mult != 1.0) and not args.pretrained:
        raise UsageError('--freeze-features and --features-lr-mult need --pretrained')


def _default_prefix(name):
    """``checkpoints/NAME``, or ``NAME-2``, ``-3``... so a new run never overwrites an old one."""
    base = os.path.join('checkpoints', name)
    prefix, number = base, 1
    while os.path.exists(ckpt.symbol_path(prefix)):
        number += 1
        prefix = '%s-%d' % (base, number)
    return prefix


def _check_resume_meta(args, meta, image_shape):
    for key, ours in (('network', args.network), ('num_classes', args.num_classes),
                      ('image_shape', list(image_shape)), ('dtype', args.dtype)):
        if key in meta and meta[key] != ours:
            raise UsageError('%s was trained with %s=%s, but this run has %s; pass the same '
                             'flags to resume' % (ckpt.sidecar_path(args.model_prefix), key,
                                                  meta[key], ours))


def prepare(args):
    """Every check a user's mistake can fail, then data, graph and kvstore: returns the run."""
    demo = not args.data_train and not args.benchmark
    if demo and args.data_val:
        raise UsageError('--data-val needs --data-train')
    contexts = get_contexts(args.gpus, args.cpus)
    class_names = None
    if args.data_train and not args.benchmark:
        from iterators import check_record_file
        check_record_file(args.data_train)
        if args.data_val:
            check_record_file(args.data_val)
        class_names = read_class_names(args.data_train)
        if class_names and args.num_classes is None:
            args.num_classes = len(class_names)
    resolve_defaults(args, demo)
    _check_numbers(args)
    check_batch_split(args.batch_size, contexts)
    if args.dtype == 'float16' and contexts[0].device_type == 'cpu':
        raise UsageError('--dtype float16 needs --gpus: MXNet has no float16 matrix multiply '
                         'on the CPU')
    if class_names and len(class_names) != args.num_classes:
        raise UsageError('--num-classes is %d but the labels file beside %s lists %d classes'
                         % (args.num_classes, args.data_train, len(class_names)))
    image_shape = (symbols.parse_image_shape(args.image_shape) if args.image_shape
                   else symbols.default_image_shape(args.network))
    symbol = symbols.get_symbol(args.network, args.num_classes, image_shape, dtype=args.dtype,
                                dropout=args.dropout)
    step_epochs = parse_epochs(args.lr_step_epochs)
    name = 'digits-' + args.network if demo else args.network
    prefix = args.model_prefix or _default_prefix(name)
    data_shape = (args.batch_size,) + tuple(image_shape)

    arg_params, aux_params, meta = None, None, {}
    if args.load_epoch is not None:
        meta = ckpt.read_sidecar(prefix)
        _check_resume_meta(args, meta, image_shape)
        _, arg_params, aux_params = ckpt.load_checkpoint(prefix, args.load_epoch)
        finetune.check_compatible(symbol, data_shape, arg_params, aux_params,
                                  ckpt.params_path(prefix, args.load_epoch))
    elif args.pretrained:
        arg_params, aux_params = finetune.load_params_file(args.pretrained, args.network)
        arg_params = finetune.without_head(arg_params)
        finetune.check_compatible(symbol, data_shape, arg_params, aux_params, args.pretrained)
    fixed = None
    if args.pretrained and args.freeze_features:
        fixed = finetune.feature_params(symbol)
    elif args.pretrained and args.features_lr_mult != 1.0:
        finetune.set_lr_mult(symbol, finetune.feature_params(symbol), args.features_lr_mult)

    kv = create_kvstore(args.kv_store, contexts)
    rank, num_workers = worker_of(kv)
    setup_logging(rank, num_workers)
    if demo:
        data_train, data_val, class_names = demo_records(progress=args.progress and rank == 0)
    else:
        data_train, data_val = args.data_train, args.data_val
    make_train_iter, val_iter = _iter_factories(args, data_train, data_val, image_shape, rank,
                                                num_workers)
    train_iter = make_train_iter(1)
    if args.num_examples:
        epoch_updates = updates_per_epoch(args.num_examples, args.batch_size, num_workers)
    else:
        epoch_updates = train_iter.batches_per_epoch
    scheduler = create_scheduler(args.lr_scheduler, args.lr, epoch_updates, args.num_epochs,
                                 step_epochs=step_epochs, factor=args.lr_factor,
                                 warmup_epochs=args.warmup_epochs)
    return SimpleNamespace(
        args=args, contexts=contexts, kv=kv, rank=rank, num_workers=num_workers, symbol=symbol,
        image_shape=image_shape, prefix=prefix, class_names=class_names, train_iter=train_iter,
        make_train_iter=make_train_iter, val_iter=val_iter, epoch_updates=epoch_updates,
        scheduler=scheduler, arg_params=arg_params, aux_params=aux_params, meta=meta,
        fixed_params=fixed)


def _iter_factories(args, data_train, data_val, image_shape, rank, num_workers):
    """``(make_train_iter(epoch), val_iter)``. The training iterator is made afresh each
    epoch, seeded by ``--seed`` and the epoch number, so a resumed run sees the same order
    and augmentation in epoch k as an uninterrupted one."""
    import iterators
    if args.benchmark:
        batches = (updates_per_epoch(args.num_examples, args.batch_size) if args.num_examples
                   else BENCHMARK_BATCHES)

        def synthetic(epoch):
            data = iterators.SyntheticIter(args.batch_size, image_shape, args.num_classes,
                                           batches, seed=args.seed + epoch)
            data.batches_per_epoch = batches
            return data
        return synthetic, None
    kwargs = iterators.data_iter_kwargs(args)
    kwargs.update(num_parts=num_workers, part_index=rank)
    val = None
    if data_val and rank == 0:
        # Only rank 0 records metrics, so it scores the whole validation set (forward only,
        # no kvstore traffic: the other workers just wait at their next push).
        shared = ('mean_rgb', 'std_rgb', 'num_threads')
        val = iterators.get_val_iter(data_val, args.batch_size, image_shape,
                                     **{k: v for k, v in kwargs.items() if k in shared})

    def records(epoch):
        return iterators.get_train_iter(data_train, args.batch_size, image_shape,
                                        seed=args.seed + epoch, **kwargs)
    return records, val


def measure_io(run):
    """``--test-io``: read one epoch of training data, no compute; report images/s."""
    args, data = run.args, run.train_iter
    start, images = time.time(), 0
    with epoch_bar(0, 1, data.batches_per_epoch * args.batch_size, args.progress) as bar:
        for batch in data:
            batch.data[0].wait_to_read()
            images += args.batch_size - batch.pad
            bar.update(args.batch_size)
    speed = images / max(time.time() - start, 1e-9)
    logging.info('test-io: %d images in %.1f s: %.1f images/s', images, time.time() - start, speed)
    return SimpleNamespace(prefix=run.prefix, images=images, images_per_sec=speed)


def _begin_num_update(run):
    """Updates already applied when resuming: recorded in the sidecar, else whole epochs."""
    args = run.args
    if args.load_epoch is None:
        return 0
    saved = run.meta.get('checkpoints', {}).get(str(args.load_epoch), {})
    return int(saved.get('num_update', args.load_epoch * run.epoch_updates))


def build_module(run, begin_num_update):
    """Bound, initialised ``Module`` with its optimizer (and restored optimizer state)."""
    args = run.args
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    module = mx.mod.Module(run.symbol, context=run.contexts, fixed_param_names=run.fixed_params)
    module.bind(data_shapes=run.train_iter.provide_data,
                label_shapes=run.train_iter.provide_label)
    module.init_params(create_initializer(args.initializer), arg_params=run.arg_params,
                       aux_params=run.aux_params, allow_missing=bool(args.pretrained))
    params = dict(learning_rate=args.lr, wd=args.wd, lr_scheduler=run.scheduler,
                  begin_num_update=begin_num_update, multi_precision=args.dtype == 'float16')
    if args.optimizer.lower() in MOMENTUM_OPTIMIZERS:
        params['momentum'] = args.mom
    module.init_optimizer(kvstore=run.kv, optimizer=args.optimizer.lower(), optimizer_params=params)
    if args.load_epoch is not None:
        _restore_optimizer_states(run, module)
    if args.monitor:
        run.monitor = mx.mon.Monitor(args.monitor, pattern='.*')
        module.install_monitor(run.monitor)
    else:
        run.monitor = None
    return module


def _state_copies(run, module):
    """How many copies of the optimizer state the updater keeps (one per device unless the
    kvstore updates): a ``.states`` file only fits a run with the same count."""
    return 1 if module._update_on_kvstore else len(run.contexts)


def _can_save_states(run):
    return run.kv is None or 'dist' not in run.kv.type


def _restore_optimizer_states(run, module):
    path = ckpt.states_path(run.prefix, run.args.load_epoch)
    if not os.path.isfile(path):
        logging.warning('%s not found: optimizer state (momentum) starts from zero', path)
        return
    saved = run.meta.get('checkpoints', {}).get(str(run.args.load_epoch), {})
    copies = saved.get('state_copies')
    if copies is not None and copies != _state_copies(run, module):
        raise UsageError('%s holds optimizer state for %d device copies, this run keeps %d: '
                         'resume with the same --gpus/--cpus/--kv-store'
                         % (path, copies, _state_copies(run, module)))
    if _can_save_states(run):
        module.load_optimizer_states(path)


def evaluate(module, data, top_k):
    """Top-1/top-k accuracy and loss over the real rows of ``data`` (padding excluded)."""
    metrics = TopKMetrics(top_k)
    data.reset()
    for batch in data:
        module.forward(batch, is_train=False)
        metrics.update(module.get_outputs()[0].asnumpy(), batch.label[0].asnumpy(), batch.pad)
    return metrics.result()


class Recorder(object):
    """Rank 0's per-epoch files: checkpoint, optimizer state, sidecar, CSV, plot, best."""

    def __init__(self, run, start_epoch):
        self.run = run
        args = run.args
        self.rows = read_metrics_csv(metrics_path(run.prefix), start_epoch) if start_epoch else []
        checkpoints = {k: v for k, v in run.meta.get('checkpoints', {}).items()
                       if int(k) <= start_epoch}
        self.meta = dict(
            network=args.network, num_classes=args.num_classes,
            image_shape=list(run.image_shape), mean_rgb=list(args.rgb_mean),
            std_rgb=list(args.rgb_std) if args.rgb_std else None,
            class_names=run.class_names, dtype=args.dtype, epoch=start_epoch,
            best_epoch=None, best_val_top1=None, checkpoints=checkpoints,
            batch_size=args.batch_size, pretrained=args.pretrained or run.meta.get('pretrained'))
        self._update_best()
        # Resumed before the old best epoch: P-best.params must follow the kept rows.
        best = self.meta['best_epoch']
        if run.rank == 0 and best and best != run.meta.get('best_epoch'):
            ckpt.mark_best(run.prefix, best)

    def _update_best(self):
        scored = [r for r in self.rows if r.get('val_top1') not in (None, '')]
        if not scored:
            return False
        best = max(scored, key=lambda r: (float(r['val_top1']), -int(r['epoch'])))
        changed = self.meta['best_epoch'] != int(best['epoch'])
        self.meta.update(best_epoch=int(best['epoch']), best_val_top1=float(best['val_top1']))
        return changed

    @property
    def wall_seconds(self):
        return float(self.rows[-1]['wall_seconds']) if self.rows else 0.0

    def save(self, module, epoch, row, num_update, batches, partial):
        run = self.run
        # Workers other than rank 0 hold the same weights; --benchmark without an explicit
        # --model-prefix only measures speed.
        if run.rank != 0 or (run.args.benchmark and not run.args.model_prefix):
            return
        arg_params, aux_params = module.get_params()
        ckpt.save_checkpoint(run.prefix, epoch, run.symbol, arg_params, aux_params)
        if _can_save_states(run):
            ckpt.save_optimizer_states(module, run.prefix, epoch)
        self.rows = [r for r in self.rows if int(r['epoch']) < epoch] + [row]
        write_metrics_csv(metrics_path(run.prefix), self.rows)
        self.meta['checkpoints'][str(epoch)] = dict(
            num_update=num_update, batches=batches, partial=partial,
            state_copies=_state_copies(run, module))
        self.meta['epoch'] = epoch
        if self._update_best() and self.meta['best_epoch'] == epoch:
            ckpt.mark_best(run.prefix, epoch)
        for old in ckpt.prune_epochs(run.prefix, epoch, run.args.keep_checkpoints):
            self.meta['checkpoints'].pop(str(old), None)
        ckpt.write_sidecar(run.prefix, self.meta)
        plot_curves(curves_path(run.prefix), self.rows, run.args.top_k)


def _row(epoch, train, val, lr, images, seconds, wall):
    row = dict(epoch=epoch, train_top1=round(train['top1'], 5), train_loss=round(train['loss'], 5),
               lr=lr, images_per_sec=round(images / max(seconds, 1e-9), 2),
               epoch_seconds=round(seconds, 2), wall_seconds=round(wall, 2))
    if train['topk'] is not None:
        row['train_topk'] = round(train['topk'], 5)
    if val:
        row.update(val_top1=round(val['top1'], 5), val_loss=round(val['loss'], 5))
        if val['topk'] is not None:
            row['val_topk'] = round(val['topk'], 5)
    return row


def train_epoch(run, module, data, epoch, stop, speedometer, metrics):
    """One pass over ``data`` (or up to a stop request). Returns (batches, images, seconds)."""
    args, per_batch = run.args, run.args.batch_size
    metrics.reset()
    speedometer.start_epoch()
    tic, images, nbatch = time.time(), 0, 0
    with epoch_bar(epoch - 1, args.num_epochs, data.batches_per_epoch * per_batch,
                   args.progress and run.rank == 0) as bar:
        for nbatch, batch in enumerate(data, 1):
            if run.monitor:
                run.monitor.tic()
            module.forward_backward(batch)
            module.update()
            loss = metrics.update(module.get_outputs()[0].asnumpy(), batch.label[0].asnumpy(),
                                  batch.pad)
            check_finite(loss, epoch, nbatch)
            if run.monitor:
                run.monitor.toc_print()
            images += per_batch - batch.pad
            bar.update(per_batch)
            speedometer(epoch, nbatch, metrics)
            if stop.requested:
                break
    return nbatch, images, time.time() - tic


def _log_epoch(epoch, metrics, val, seconds, images, lr, top_k):
    logging.info('Epoch[%d] Train-%s\tTime cost=%.1f s\tSpeed=%.1f images/s\tlr=%g', epoch,
                 metrics.describe(), seconds, images / max(seconds, 1e-9), lr)
    if val is not None:
        logging.info('Epoch[%d] Validation-top1=%.4f%s\tcross-entropy=%.4f', epoch, val['top1'],
                     '\ttop%d=%.4f' % (top_k, val['topk']) if top_k else '', val['loss'])


def _log_done(run, recorder, result):
    if result.stopped_by or run.rank != 0:
        return
    last, meta = (recorder.rows[-1] if recorder.rows else {}), recorder.meta
    scores = ('; final val top-1 %s, best %.4f (epoch %d)'
              % (last.get('val_top1'), meta['best_val_top1'], meta['best_epoch'])
              if meta['best_epoch'] else '')
    logging.info('done: %d epochs in %.0f s%s; files: %s-*', result.epoch,
                 recorder.wall_seconds, scores, run.prefix)


def train(run):
    """The epochs from ``--load-epoch`` (or 1) to ``--num-epochs``, saving after each."""
    args = run.args
    start_epoch = args.load_epoch or 0
    num_update = _begin_num_update(run)
    module = build_module(run, num_update)
    recorder = Recorder(run, start_epoch)
    speedometer = Speedometer(args.batch_size, args.disp_batches)
    metrics = TopKMetrics(args.top_k)
    batch = ('%d per worker x %d workers = %d' % (args.batch_size, run.num_workers,
                                                   args.batch_size * run.num_workers)
             if run.num_workers > 1 else str(args.batch_size))
    logging.info('training %s on %s, batch %s, %d updates per epoch; checkpoints: %s-*',
                 args.network, ','.join(str(c) for c in run.contexts), batch,
                 run.epoch_updates, run.prefix)
    result = SimpleNamespace(prefix=run.prefix, epoch=start_epoch, stopped_by=None,
                             module=module, rows=recorder.rows, meta=recorder.meta)
    with StopRequest() as stop:
        for epoch in range(start_epoch + 1, args.num_epochs + 1):
            data = run.train_iter if epoch == 1 else run.make_train_iter(epoch)
            nbatch, images, seconds = train_epoch(run, module, data, epoch, stop, speedometer,
                                                  metrics)
            num_update += nbatch
            lr = run.scheduler(max(num_update, 1))
            wall = recorder.wall_seconds + seconds
            if stop.requested and nbatch < data.batches_per_epoch:
                row = _row(epoch, metrics.result(), None, lr, images, seconds, wall)
                recorder.save(module, epoch, row, num_update, nbatch, partial=True)
                result.stopped_by, result.epoch = signal.Signals(stop.signum).name, epoch
                logging.warning('stopped in epoch %d after %d of %d batches; saved %s (partial '
                                'epoch). Resume with --model-prefix %s --load-epoch %d',
                                epoch, nbatch, data.batches_per_epoch,
                                ckpt.params_path(run.prefix, epoch), run.prefix, epoch)
                break
            val = evaluate(module, run.val_iter, args.top_k) if run.val_iter else None
            if val is not None:
                check_finite(val['loss'], epoch)
            _log_epoch(epoch, metrics, val, seconds, images, lr, args.top_k)
            row = _row(epoch, metrics.result(), val, lr, images, seconds, wall)
            recorder.save(module, epoch, row, num_update, nbatch, partial=False)
            result.epoch = epoch
            if stop.requested:
                result.stopped_by = signal.Signals(stop.signum).name
                logging.warning('stopped after epoch %d; saved %s. Resume with --model-prefix '
                                '%s --load-epoch %d', epoch, ckpt.params_path(run.prefix, epoch),
                                run.prefix, epoch)
                break
    result.rows = recorder.rows
    _log_done(run, recorder, result)
    return result
