"""``fit(args)``: train a network with ``mx.mod.Module`` on every listed device.

The loop is written out (bind, init_params, init_optimizer, then forward_backward/update per
batch) rather than ``Module.fit`` so that it can show a progress bar, stop on a signal
after saving, catch a diverging loss, and exclude padded rows from every metric.

Epochs are numbered from 1 everywhere (bar, log lines, CSV, messages): epoch ``k`` ends by
writing ``P-000k.params``. Stopped by Ctrl-C/SIGTERM during epoch ``k``, the run saves the
state reached as ``P-000k.*`` marked ``partial`` in the sidecar; ``--load-epoch k`` then
continues with epoch ``k+1`` (``--load-epoch k-1`` repeats epoch ``k`` in full).

Nothing a user can get wrong is found late: the prefix is locked and probed for writing, the
flags, every record's label and the checkpoint to resume are checked before the first batch.
"""
import argparse
import os
import signal
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Optional

import mxnet as mx
import numpy as np

import iterators
import symbols
from alexnet_mxnet.base import checkpoint as ckpt
from alexnet_mxnet.base.checkpoint import metrics_path
from alexnet_mxnet.base.devices import (check_batch_split, cpu_has_bf16_instructions,
                                         get_contexts)
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.labels import labels_beside
from alexnet_mxnet.base.metrics import TopKMetrics
from alexnet_mxnet.data.demo import ensure_digits_dataset
from alexnet_mxnet.train import finetune, mixing
from alexnet_mxnet.train.args import resolve_defaults
from alexnet_mxnet.train.callbacks import (LOG, Speedometer, StopRequest, check_finite,
                                           epoch_bar, log_rank)
from alexnet_mxnet.train.ema import ModelEMA, ema_files, load_ema
from alexnet_mxnet.train.kvstore import create_kvstore, worker_of
from alexnet_mxnet.train.lr_schedule import (create_initializer, create_scheduler, parse_epochs,
                                             updates_per_epoch)
from alexnet_mxnet.train.prefix import claimed_prefix
from alexnet_mxnet.train.recorder import (Recorder, can_save_states, config_of,
                                          read_metrics_csv, row_of, state_copies)
from alexnet_mxnet.train.resume import resolve_load_epoch
from alexnet_mxnet.train.step import train_step
from symbols import lrn_kernel
from symbols.alexnet import WEIGHT_DTYPE
from symbols.lrn import training_graph

MOMENTUM_OPTIMIZERS = ('sgd', 'nag', 'signum', 'dcasgd', 'lbsgd')
# Synthetic data for --benchmark: this many batches per epoch unless --num-examples says.
BENCHMARK_BATCHES = 50
# Flags that say how to start or where to write, not what is trained: a resume may change them.
RUN_CONTROL = ('load_epoch', 'overwrite', 'num_epochs', 'progress', 'disp_batches', 'monitor',
               'keep_checkpoints', 'model_prefix')


@dataclass
class Plan:
    """What the flags alone decide (``check_flags``), before any file of the run is touched."""
    demo: bool                   # no --data-train and no --benchmark: the built-in digits demo
    class_names: Optional[list]  # from the labels file beside --data-train, if there is one
    contexts: list               # the devices the batch is split over
    image_shape: tuple           # (C, H, W)
    symbol: mx.sym.Symbol        # the graph checkpoints hold (ending in SoftmaxOutput)
    step_epochs: list            # --lr-step-epochs as numbers
    name: str                    # of the default prefix: NETWORK, or digits-NETWORK


@dataclass
class Run:
    """Everything a training run works with once it is checked and prepared (``prepare``)."""
    args: argparse.Namespace     # the flags, with the recipe's defaults filled in
    contexts: list
    symbol: mx.sym.Symbol        # the graph checkpoints hold
    train_symbol: mx.sym.Symbol  # the graph trained: ``symbol``, or its soft-label head
    image_shape: tuple
    kv: Optional[mx.kv.KVStore]  # None on a single local device
    rank: int                    # this worker's kvstore rank (0 when alone)
    num_workers: int
    prefix: str                  # where the run's files go (locked when ``writes``)
    writes: bool                 # rank 0 records the run; other workers and --test-io do not
    class_names: Optional[list]  # recorded in the sidecar for scoring and prediction
    train_iter: mx.io.DataIter   # epoch 1's training data
    make_train_iter: Callable    # epoch -> that epoch's training data (seeded by the epoch)
    val_iter: Optional[mx.io.DataIter]   # rank 0 validates on the whole set
    epoch_updates: int           # optimizer updates per epoch, for the lr schedule
    scheduler: mx.lr_scheduler.LRScheduler   # in absolute update counts
    arg_params: Optional[dict]   # starting weights when resuming or fine-tuning
    aux_params: Optional[dict]
    ema_params: Optional[tuple]  # the resumed average of the weights (--model-ema)
    meta: dict                   # the resumed run's sidecar ({} for a new run)
    rows: list                   # the resumed run's metrics rows up to --load-epoch
    fixed_params: Optional[list]  # --freeze-features: parameters left as loaded
    monitor: Optional[mx.mon.Monitor] = field(default=None)   # --monitor


def fit(args):
    """Train as ``args`` (``alexnet_mxnet.train.args.build_train_parser`` flags) say. Returns a
    summary namespace: ``prefix``, ``epoch`` (last saved), ``rows`` (CSV rows), ``stopped_by``
    (signal name or None), ``module``, ``meta`` (the sidecar).

    The flags are checked first; then (rank 0 of a job, when it writes anything) the prefix
    is locked for the run's whole lifetime before any other work. Ctrl-C/SIGTERM before the
    first batch ends the run at the next step, once training runs it stops after the
    current batch with a checkpoint (see ``StopRequest``). Logs go to the
    ``alexnet_mxnet.train`` logger; configuring logging is the caller's."""
    if (finished := resolve_load_epoch(args)) is not None:   # --load-epoch auto, run complete
        return finished
    with StopRequest() as stop:
        plan = check_flags(args)
        # dist_*: joins the job and learns its rank
        kv = create_kvstore(args.kv_store, plan.contexts, args.gc_type, args.gc_threshold)
        stop.check()
        rank, num_workers = worker_of(kv)
        log_rank(rank, num_workers)
        writes = rank == 0 and not args.test_io and not (args.benchmark and not args.model_prefix)
        with claimed_prefix(args, plan.name, writes) as prefix:
            run = prepare(args, plan, kv, prefix, writes, stop.check)
            if args.test_io:
                return measure_io(run, stop)
            return train(run, stop)


def check_flags(args):
    """Every check of the flags alone (and of the labels file that sets --num-classes):
    returns what they decide -- demo or not, contexts, image shape, symbol, lr steps."""
    demo = not args.data_train and not args.benchmark
    if demo and args.data_val:
        raise UsageError('--data-val needs --data-train')
    class_names = labels_beside(args.data_train) if args.data_train and not args.benchmark \
        else None
    if class_names and args.num_classes is None:
        args.num_classes = len(class_names)
    resolve_defaults(args, demo)
    if args.optimizer.lower() not in mx.optimizer.Optimizer.opt_registry:
        raise UsageError('unknown --optimizer %r; choose one of %s' % (
            args.optimizer, ', '.join(sorted(mx.optimizer.Optimizer.opt_registry))))
    if args.load_epoch is not None:
        if args.pretrained:
            raise UsageError('give --load-epoch (resume) or --pretrained (fine-tune), not both')
        if args.overwrite:
            raise UsageError('give --load-epoch (resume the run) or --overwrite (replace it), '
                             'not both')
        if not args.model_prefix:
            raise UsageError('--load-epoch needs the --model-prefix of the run to resume')
        if not args.load_epoch < args.num_epochs:
            raise UsageError('--load-epoch must be in [1, --num-epochs=%d), got %d'
                             % (args.num_epochs, args.load_epoch))
    if (args.freeze_features or args.features_lr_mult != 1.0) and not args.pretrained:
        raise UsageError('--freeze-features and --features-lr-mult need --pretrained')
    _check_recipe(args)
    if class_names and len(class_names) != args.num_classes:
        raise UsageError('--num-classes is %d but the labels file beside %s lists %d classes'
                         % (args.num_classes, args.data_train, len(class_names)))
    contexts = get_contexts(args.gpus, args.cpus)
    check_batch_split(args.batch_size, contexts)
    _check_dtype(args.dtype, contexts[0].device_type)
    image_shape = symbols.resolve_image_shape(args.network, args.image_shape)
    symbol = symbols.get_symbol(args.network, args.num_classes, image_shape, dtype=args.dtype,
                                dropout=args.dropout, label_smoothing=args.label_smoothing,
                                lrn=args.lrn)
    return Plan(
        demo=demo, class_names=class_names, contexts=contexts, image_shape=image_shape,
        symbol=symbol, step_epochs=parse_epochs(args.lr_step_epochs),
        name='digits-' + args.network if demo else args.network)


def _check_dtype(dtype, device_type):
    if dtype == 'float16' and device_type == 'cpu':
        raise UsageError('--dtype float16 needs --gpus: MXNet has no float16 matrix multiply '
                         'on the CPU; on a CPU with AVX512-BF16 or AMX, --dtype bfloat16')
    if dtype == 'bfloat16' and device_type != 'cpu':
        raise UsageError('--dtype bfloat16 trains on CPUs (oneDNN); on GPUs use --dtype float16')
    if dtype == 'bfloat16' and cpu_has_bf16_instructions() is False:
        LOG.warning('this CPU has no bfloat16 instructions (AVX512-BF16, AMX): --dtype bfloat16 '
                    'runs emulated, slower than float32 (or not at all without AVX-512)')


def _check_recipe(args):
    """The recipe flags that make no sense together."""
    iterators.check_augment_args(args)
    if args.mixup_off_epochs and not mixing.mixes(args):
        raise UsageError('--mixup-off-epochs needs --mixup or --cutmix')
    if mixing.mixes(args) and args.mixup_off_epochs >= args.num_epochs:
        raise UsageError('--mixup-off-epochs %d leaves none of the %d epochs to mix: give '
                         'fewer, or drop --mixup/--cutmix'
                         % (args.mixup_off_epochs, args.num_epochs))
    if args.label_smoothing and args.num_classes < 2:
        raise UsageError('--label-smoothing needs at least 2 classes')


def _check_resume_meta(args, meta, image_shape):
    for key, ours in (('network', args.network), ('num_classes', args.num_classes),
                      ('image_shape', list(image_shape)), ('dtype', args.dtype),
                      ('optimizer', args.optimizer.lower())):
        if key in meta and meta[key] != ours:
            raise UsageError('%s was trained with %s=%s, but this run has %s; pass the same '
                             'flags to resume' % (ckpt.sidecar_path(args.model_prefix), key,
                                                  meta[key], ours))


def _report_changed_flags(args, meta):
    """Log the flags of this resumed run that differ from the run's recorded ones (a resume
    normally repeats the command; a changed --lr or schedule is allowed, but said)."""
    saved = meta.get('config') or {}
    ours = config_of(args)
    changed = ['--%s %s (was %s)' % (key.replace('_', '-'), _flag_text(ours.get(key)),
                                     _flag_text(saved[key]))
               for key in sorted(saved) if key not in RUN_CONTROL and ours.get(key) != saved[key]]
    if changed:
        LOG.warning('resuming with flags that differ from the run\'s: %s', ', '.join(changed))


def _flag_text(value):
    return ','.join(map(str, value)) if isinstance(value, list) else str(value)


def _load_resume_point(args, prefix, plan, data_shape):
    """``(meta, rows, arg_params, aux_params)`` of the complete checkpoint ``--load-epoch``."""
    complete = ckpt.recorded_epochs(prefix)
    if args.load_epoch not in complete:
        if not complete:
            raise UsageError('checkpoint to resume not found: %s holds no complete epoch'
                             % prefix)
        raise UsageError('epoch %d of %s is not a complete checkpoint (its save was cut short, '
                         'or pruned); complete epochs: %s'
                         % (args.load_epoch, prefix, ', '.join(map(str, complete))))
    meta = ckpt.read_sidecar(prefix)
    _check_resume_meta(args, meta, plan.image_shape)
    _report_changed_flags(args, meta)
    rows = read_metrics_csv(metrics_path(prefix), args.load_epoch)
    _, arg_params, aux_params = ckpt.load_checkpoint(prefix, args.load_epoch)
    ckpt.check_compatible(plan.symbol, data_shape, arg_params, aux_params,
                          ckpt.params_path(prefix, args.load_epoch))
    ckpt.check_optimizer_states(prefix, args.load_epoch)
    return meta, rows, arg_params, aux_params


def _check_free_space(args, prefix, symbol, data_shape):
    """Refuse to start when not even one checkpoint (weights, optimizer state of about the
    same size, the best copy, and the average of the weights) fits beside ``prefix``."""
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=data_shape)
    shapes = [s for n, s in zip(symbol.list_arguments(), arg_shapes)
              if n not in ('data', 'softmax_label')] + aux_shapes
    copies = 4 if args.model_ema else 3
    itemsize = np.dtype(WEIGHT_DTYPE[args.dtype]).itemsize
    needed = copies * sum(int(np.prod(s)) for s in shapes) * itemsize
    free = ckpt.free_bytes(prefix)
    if args.overwrite:
        free += sum(os.path.getsize(p) for p in _old_run_files(prefix))
    if free < needed:
        raise UsageError('the folder of %s has %.1f MB free, but a checkpoint of this network '
                         'needs about %.0f MB (weights, optimizer state, best copy%s); free '
                         'some space or choose another --model-prefix'
                         % (prefix, free / 1e6, needed / 1e6,
                            ', average' if args.model_ema else ''))


def _old_run_files(prefix):
    """Every file of the run at ``prefix``, averages of the weights included."""
    return ckpt.run_files(prefix) + ema_files(prefix)


def _with_lrn_kernel(symbol, contexts):
    """``symbol`` with its fast LRNs run by the fused CPU kernel where it can be, said either
    way."""
    graph, why_not = training_graph(symbol, contexts)
    if graph is not symbol:
        LOG.info('LRN: the fused CPU kernel')
    elif why_not:
        log = LOG.info if lrn_kernel.switched_off() else LOG.warning
        log('LRN: the fused CPU kernel is not used (%s); the same LRN from stock operators is '
            'slower', why_not)
    return graph


def prepare(args, plan, kv, prefix, writes, check=lambda: None):
    """Every remaining check a user's mistake can fail -- checkpoint to resume, free space,
    every record of the data -- then the data iterators: returns the run. ``check()``
    between the steps may raise to abort."""
    rank, num_workers = worker_of(kv)
    symbol, image_shape, class_names = plan.symbol, plan.image_shape, plan.class_names
    data_shape = (args.batch_size,) + tuple(image_shape)

    arg_params, aux_params, meta, rows, ema_params = None, None, {}, [], None
    if args.load_epoch is not None:
        meta, rows, arg_params, aux_params = _load_resume_point(args, prefix, plan, data_shape)
        if args.model_ema and rank == 0:
            ema_params = load_ema(prefix, args.load_epoch, meta, symbol, data_shape)
    elif args.pretrained:
        arg_params, aux_params = symbols.load_weights(args.pretrained, args.network)
        arg_params = finetune.without_head(arg_params)
        ckpt.check_compatible(symbol, data_shape, arg_params, aux_params, args.pretrained)
    fixed = None
    if args.pretrained and args.freeze_features:
        fixed = finetune.feature_params(symbol)
    elif args.pretrained and args.features_lr_mult != 1.0:
        finetune.set_lr_mult(symbol, finetune.feature_params(symbol), args.features_lr_mult)
    train_symbol = mixing.soft_label_head(symbol) if mixing.mixes(args) else symbol
    if writes:
        _check_free_space(args, prefix, symbol, data_shape)
    check()

    if plan.demo:
        demo = ensure_digits_dataset(progress=args.progress and rank == 0)
        data_train, data_val = demo.records['train'], demo.records['val']
        class_names = list(demo.class_names)
    else:
        data_train, data_val = args.data_train, args.data_val
    if not args.benchmark:
        for path in (data_train, data_val):
            if path:
                iterators.check_record_file(path, args.num_classes)
                check()
        if num_workers > 1:
            _warn_if_part_lacks_classes(data_train, rank, num_workers)
    make_train_iter, val_iter = _iter_factories(args, data_train, data_val, image_shape, rank,
                                                num_workers)
    train_iter = make_train_iter(1)
    if args.num_examples:
        epoch_updates = updates_per_epoch(args.num_examples, args.batch_size, num_workers)
    else:
        epoch_updates = train_iter.batches_per_epoch
    scheduler = create_scheduler(args.lr_scheduler, args.lr, epoch_updates, args.num_epochs,
                                 step_epochs=plan.step_epochs, factor=args.lr_factor,
                                 warmup_epochs=args.warmup_epochs)
    # after every check of the user's input (which must fail in one line, before any log)
    train_symbol = _with_lrn_kernel(train_symbol, plan.contexts)
    if writes and args.overwrite:
        old = _old_run_files(prefix)
        ckpt.remove_files(old)
        if old:
            LOG.info('--overwrite: removed the %d files of the earlier run at %s', len(old),
                     prefix)
    return Run(
        args=args, contexts=plan.contexts, kv=kv, rank=rank, num_workers=num_workers,
        symbol=symbol, train_symbol=train_symbol, image_shape=image_shape, prefix=prefix,
        writes=writes,
        class_names=class_names, train_iter=train_iter, make_train_iter=make_train_iter,
        val_iter=val_iter, epoch_updates=epoch_updates, scheduler=scheduler,
        arg_params=arg_params, aux_params=aux_params, ema_params=ema_params, meta=meta,
        rows=rows, fixed_params=fixed)


def _warn_if_part_lacks_classes(data_train, rank, num_workers):
    """Each worker reads a contiguous part of the .rec: records in class order (a .rec from
    ``im2rec.py --no-shuffle``, or an unshuffled .lst) give it only some classes, so its
    batch-norm statistics, metrics and gradients come from those alone."""
    part, whole = iterators.classes_of_part(data_train, num_workers, rank)
    if part < whole:
        LOG.warning('this worker reads part %d of %d of %s, which holds only %d of its %d '
                    'classes (the records are in class order): convert it again with '
                    'im2rec.py, which shuffles the records, so that every worker sees every '
                    'class', rank + 1, num_workers, data_train, part, whole)


def _iter_factories(args, data_train, data_val, image_shape, rank, num_workers):
    """``(make_train_iter(epoch), val_iter)``. The training iterator is made afresh each
    epoch, seeded by ``--seed`` and the epoch number, so a resumed run sees the same order
    and augmentation in epoch k as an uninterrupted one (mixing and erasing too: their draws
    are seeded by --seed, the epoch and the batch)."""
    if args.benchmark:
        batches = (updates_per_epoch(args.num_examples, args.batch_size) if args.num_examples
                   else BENCHMARK_BATCHES)

        def synthetic(epoch):
            data = iterators.SyntheticIter(args.batch_size, image_shape, args.num_classes,
                                           batches, seed=args.seed + epoch)
            data.batches_per_epoch = batches
            return mixing.train_batches(args, data, epoch, rank)
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
        data = iterators.get_train_iter(data_train, args.batch_size, image_shape,
                                        seed=args.seed + epoch, **kwargs)
        return mixing.train_batches(args, data, epoch, rank)
    return records, val


def measure_io(run, stop):
    """``--test-io``: read one epoch of training data, no compute; report images/s."""
    args, data = run.args, run.train_iter
    start, images = time.time(), 0
    with epoch_bar(0, 1, data.batches_per_epoch * args.batch_size, args.progress) as bar:
        for batch in data:
            stop.check()
            batch.data[0].wait_to_read()
            images += args.batch_size - batch.pad
            bar.update(args.batch_size)
    speed = images / max(time.time() - start, 1e-9)
    LOG.info('test-io: %d images in %.1f s: %.1f images/s', images, time.time() - start, speed)
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
    module = mx.mod.Module(run.train_symbol, context=run.contexts,
                           fixed_param_names=run.fixed_params)
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


def _restore_optimizer_states(run, module):
    path = ckpt.states_path(run.prefix, run.args.load_epoch)
    if not os.path.isfile(path):
        LOG.warning('%s not found: optimizer state (momentum) starts from zero', path)
        return
    saved = run.meta.get('checkpoints', {}).get(str(run.args.load_epoch), {})
    copies = saved.get('state_copies')
    if copies is not None and copies != state_copies(run, module):
        raise UsageError('%s holds optimizer state for %d device copies, this run keeps %d: '
                         'resume with the same --gpus/--cpus/--kv-store'
                         % (path, copies, state_copies(run, module)))
    if can_save_states(run):
        module.load_optimizer_states(path)   # checked by _load_resume_point


def evaluate(module, data, top_k, check=lambda: None):
    """Top-1/top-k accuracy and loss over the real rows of ``data`` (padding excluded);
    ``check()`` runs before every batch (it may raise to abort). The labels go to the
    metrics only, not into the graph, whose label input may be a soft-label head's."""
    metrics = TopKMetrics(top_k)
    data.reset()
    for batch in data:
        check()
        module.forward(mx.io.DataBatch(batch.data, pad=batch.pad), is_train=False)
        metrics.update(module.get_outputs()[0].asnumpy(), batch.label[0].asnumpy(), batch.pad)
    return metrics.result()


def _validate(run, module, ema, check):
    """``(val, val_ema)``: the scores of the raw weights and of their average (None when
    the run has no validation data, or keeps no average)."""
    if not run.val_iter:
        return None, None
    top_k = run.args.top_k
    val = evaluate(module, run.val_iter, top_k, check)
    val_ema = (evaluate(ema.module_for(run.symbol, run.contexts, run.val_iter), run.val_iter,
                        top_k, check) if ema else None)
    return val, val_ema


def train_epoch(run, module, data, epoch, stop, speedometer, metrics, ema=None, num_update=0):
    """One pass over ``data`` (or up to a stop request), folding every update into ``ema``
    (``num_update``: the updates before the pass). Returns (batches, images, seconds)."""
    args, per_batch = run.args, run.args.batch_size
    metrics.reset()
    speedometer.start_epoch()
    tic, images, nbatch = time.time(), 0, 0
    with epoch_bar(epoch - 1, args.num_epochs, data.batches_per_epoch * per_batch,
                   args.progress and run.rank == 0) as bar:
        for nbatch, batch in enumerate(data, 1):
            stop.check()
            loss = train_step(module, batch, metrics, run.monitor)
            stop.check()
            check_finite(loss, epoch, nbatch)
            if ema is not None:
                ema.update(num_update + nbatch)
            images += per_batch - batch.pad
            bar.update(per_batch)
            speedometer(epoch, nbatch, metrics)
            if stop.requested:
                break
    return nbatch, images, time.time() - tic


def _log_epoch(epoch, metrics, val, val_ema, seconds, images, lr, top_k):
    LOG.info('Epoch[%d] Train-%s\tTime cost=%.1f s\tSpeed=%.1f images/s\tlr=%g', epoch,
                 metrics.describe(), seconds, images / max(seconds, 1e-9), lr)
    for name, scores in (('Validation', val), ('Validation-EMA', val_ema)):
        if scores is not None:
            LOG.info('Epoch[%d] %s-top1=%.4f%s\tcross-entropy=%.4f', epoch, name,
                     scores['top1'], '\ttop%d=%.4f' % (top_k, scores['topk']) if top_k else '',
                     scores['loss'])


def _log_done(run, recorder, result):
    if result.stopped_by or run.rank != 0:
        return
    last, meta = (recorder.rows[-1] if recorder.rows else {}), recorder.meta
    scores = ('; final val top-1 %s, best %.4f (epoch %d%s)'
              % (last.get('val_top1'), meta['best_val_top1'], meta['best_epoch'],
                 ', average of the weights' if meta['best_weights'] == 'ema' else '')
              if meta['best_epoch'] else '')
    LOG.info('done: %d epochs in %.0f s%s; files: %s-*', result.epoch,
                 recorder.wall_seconds, scores, run.prefix)


def _saved(run, recorder, epoch, saved, what):
    """What a stopped run tells: only what this process did."""
    if not saved:
        return recorder.why_nothing_saved()
    return 'saved %s%s. Resume with --model-prefix %s --load-epoch %d' % (
        ckpt.params_path(run.prefix, epoch), what, run.prefix, epoch)


def train(run, stop):
    """The epochs from ``--load-epoch`` (or 1) to ``--num-epochs``, saving after each."""
    args = run.args
    start_epoch = args.load_epoch or 0
    num_update = _begin_num_update(run)
    module = build_module(run, num_update)
    # Only rank 0 validates and saves: the other workers keep no average.
    ema = (ModelEMA(module, args.model_ema, run.ema_params)
           if args.model_ema and run.rank == 0 else None)
    stop.check()
    recorder = Recorder(run, start_epoch)
    speedometer = Speedometer(args.batch_size, args.disp_batches)
    metrics = mixing.train_metrics(args)
    batch = ('%d per worker x %d workers = %d' % (args.batch_size, run.num_workers,
                                                   args.batch_size * run.num_workers)
             if run.num_workers > 1 else str(args.batch_size))
    LOG.info('training %s on %s, batch %s, %d updates per epoch; checkpoints: %s-*',
                 args.network, ','.join(str(c) for c in run.contexts), batch,
                 run.epoch_updates, run.prefix)
    LOG.info('%s', recorder.meta['train_metrics'])
    result = SimpleNamespace(prefix=run.prefix, epoch=start_epoch, stopped_by=None,
                             module=module, ema=ema, rows=recorder.rows, meta=recorder.meta)
    stop.check()
    stop.can_save = True
    epoch = start_epoch
    try:
        for epoch in range(start_epoch + 1, args.num_epochs + 1):
            data = run.train_iter if epoch == 1 else run.make_train_iter(epoch)
            nbatch, images, seconds = train_epoch(run, module, data, epoch, stop,
                                                  speedometer, metrics, ema, num_update)
            num_update += nbatch
            lr = run.scheduler(max(num_update, 1))
            wall = recorder.wall_seconds + seconds
            if stop.requested and nbatch < data.batches_per_epoch:
                row = row_of(epoch, metrics.result(), None, lr, images, seconds, wall)
                saved = recorder.save(module, epoch, row, num_update, nbatch, partial=True,
                                      check=stop.check, ema=ema)
                result.stopped_by, result.epoch = signal.Signals(stop.signum).name, epoch
                LOG.warning('stopped in epoch %d after %d of %d batches; %s', epoch,
                                nbatch, data.batches_per_epoch,
                                _saved(run, recorder, epoch, saved, ' (partial epoch)'))
                break
            val, val_ema = _validate(run, module, ema, stop.check)
            if val is not None:
                check_finite(val['loss'], epoch)
            _log_epoch(epoch, metrics, val, val_ema, seconds, images, lr, args.top_k)
            row = row_of(epoch, metrics.result(), val, lr, images, seconds, wall, val_ema)
            saved = recorder.save(module, epoch, row, num_update, nbatch, partial=False,
                                  check=stop.check, ema=ema)
            result.epoch = epoch
            if stop.requested:
                result.stopped_by = signal.Signals(stop.signum).name
                LOG.warning('stopped after epoch %d; %s', epoch,
                                _saved(run, recorder, epoch, saved, ''))
                break
    except KeyboardInterrupt:
        if run.writes:
            LOG.warning('aborted in epoch %d without saving it; %s', epoch,
                            recorder.resume_hint())
        raise
    result.rows, result.meta = recorder.rows, recorder.meta
    _log_done(run, recorder, result)
    return result
