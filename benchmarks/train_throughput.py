"""Training throughput, head to head: this package's AlexNet training (``fit`` itself, the code
a real run executes) against the same network in PyTorch, eager and ``torch.compile``, on the
same CPU; plus ``fit`` on real photos (JPEG decoding and augmentation included).

* ``mxnet``: ``alexnet_mxnet.train.fit.fit`` with ``--benchmark`` (synthetic images), timed by
  its own Speedometer lines (``--disp-batches STEPS``): every batch goes through
  ``train_step`` as in training, metrics and NaN check included.
* ``mxnet-stock-lrn``: the same with ``ALEXNET_LRN_KERNEL=off``: the fast LRN from stock
  operators instead of the fused kernel that ``fit`` runs it through on CPUs.
* ``mxnet-real``: the same on a ``.rec`` of imagenette photos (converted once into
  ``--work-dir``, shorter side 256, random 227x227 crops and mirroring as in training).
* ``pytorch`` / ``torch.compile``: ``inference.torch_alexnet``'s twin of the same graph (LRN
  as ``nn.LocalResponseNorm``), cross-entropy, SGD momentum 0.9, weight decay 5e-4.
* ``...-bf16``: bfloat16 mixed precision, each framework its own way, float32 weights in both:
  ``fit`` with ``--dtype bfloat16`` (the convolutions in bfloat16), PyTorch under
  ``torch.autocast('cpu', torch.bfloat16)`` (convolutions and linear layers in bfloat16). The
  table puts them in rows of their own, against each other and against the bf16 peak.

Each measurement is its own process (one framework never warms or fragments memory for
another); frameworks alternate inside each of ``--rounds`` rounds, so a change in machine
load hits all of them; a process times ``--repeats`` windows of ``--steps`` steps after one
untimed window (torch.compile compiles in it), and the table gives the median of all windows.
GFLOP/s counts the convolutions and fully-connected layers (forward, and twice that
backward); the fraction is of ``--peak-gflops``.

    python benchmarks/train_throughput.py                    # every row, ~40 min
    python benchmarks/train_throughput.py --batch-sizes 32 --rounds 1 --no-real-data
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere: the repo's packages come first
DATASETS = os.path.join(os.path.dirname(REPO), 'shared', 'datasets')

import mxnet as mx  # noqa: E402

import symbols  # noqa: E402
from symbols import lrn_kernel  # noqa: E402
from alexnet_mxnet.base.argtypes import POSITIVE, POSITIVE_INT, int_list  # noqa: E402
from alexnet_mxnet.base.cli import run_cli  # noqa: E402
from alexnet_mxnet.base.errors import UsageError  # noqa: E402

SGD = dict(lr=0.01, momentum=0.9, wd=5e-4)
FRAMEWORKS = ('mxnet', 'mxnet-stock-lrn', 'mxnet-real', 'pytorch', 'torch.compile',
              'mxnet-bf16', 'pytorch-bf16', 'torch.compile-bf16')
BF16 = '-bf16'
STOCK_LRN = {lrn_kernel.SWITCH: 'off'}
SPEED = re.compile(r'Speed: ([0-9.]+) samples/sec')
ALL_CORES = range(os.cpu_count() or 1)
CHILD_TIMEOUT = 3600          # seconds: one process, generous for torch.compile on 2 cores


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch-sizes', type=int_list, default=[32, 128], metavar='32,128',
                        help='(default: 32,128)')
    parser.add_argument('--image-shape', default='3,227,227', help='(default: %(default)s)')
    parser.add_argument('--rounds', type=POSITIVE_INT, default=2,
                        help='interleaved rounds over the frameworks (default: %(default)s)')
    parser.add_argument('--repeats', type=POSITIVE_INT, default=3,
                        help='timed windows per process (default: %(default)s)')
    parser.add_argument('--steps', type=POSITIVE_INT, default=6,
                        help='training steps per window (default: %(default)s)')
    parser.add_argument('--frameworks', default=','.join(FRAMEWORKS),
                        help='any of %s (default: all)' % ', '.join(FRAMEWORKS))
    parser.add_argument('--no-real-data', action='store_true', help='skip mxnet-real')
    parser.add_argument('--datasets', default=DATASETS, help='(default: %(default)s)')
    parser.add_argument('--work-dir', default=os.path.join(REPO, 'runs', 'throughput'),
                        help='the converted imagenette .rec (default: %(default)s)')
    parser.add_argument('--peak-gflops', type=POSITIVE, default=225.0,
                        help='fp32 peak of the machine, for the %% column (default: %(default)s, '
                             '2 AVX-512 cores)')
    parser.add_argument('--peak-gflops-bf16', type=POSITIVE, default=444.0,
                        help='bf16 peak, for the %% column of the bf16 rows (default: '
                             '%(default)s, 2 AVX512-BF16 cores)')
    parser.add_argument('--child', choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument('--batch-size', type=POSITIVE_INT, help=argparse.SUPPRESS)
    parser.add_argument('--rec', help=argparse.SUPPRESS)
    return parser


# ---- FLOPs -----------------------------------------------------------------------------------

def training_gflop_per_image(shape):
    """Multiply-adds x 2 of the convolutions and fully-connected layers of ``alexnet`` at
    ``shape``, forward + backward (data and weight gradients: twice the forward)."""
    sym = symbols.get_symbol('alexnet', 1000, shape, lrn='native')
    nodes = json.loads(sym.tojson())['nodes']
    internals = sym.get_internals()
    arg_shapes, out_shapes, _ = internals.infer_shape(data=(1,) + tuple(shape))
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    shapes.update(zip(internals.list_arguments(), arg_shapes))
    macs = 0
    for node in nodes:
        if node['op'] in ('Convolution', 'FullyConnected'):
            weight = shapes[nodes[node['inputs'][1][0]]['name']]
            out = shapes[node['name'] + '_output']
            per_output = 1
            for side in weight[1:]:
                per_output *= side
            outputs = 1
            for side in out[1:]:
                outputs *= side
            macs += outputs * per_output
    return 3 * 2 * macs / 1e9


# ---- children: one measurement each ------------------------------------------------------------

def _fit_rates(flags, steps):
    """Run ``fit`` with ``flags`` in this process; the images/s of its Speedometer windows after
    the first (which holds the start-up)."""
    from alexnet_mxnet.train.args import build_train_parser
    from alexnet_mxnet.train.callbacks import LOG
    from alexnet_mxnet.train.fit import fit

    class Collect(logging.Handler):
        rates = []

        def emit(self, record):
            found = SPEED.search(record.getMessage())
            if found:
                self.rates.append(float(found.group(1)))
    handler = Collect()
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    fit(build_train_parser().parse_args([str(f) for f in flags + [
        '--disp-batches', steps, '--num-epochs', 1, '--no-progress', '--lr', SGD['lr'],
        '--mom', SGD['momentum'], '--wd', SGD['wd']]]))
    return handler.rates[1:]


def mxnet_rates(batch_size, shape, steps, repeats, dtype='float32'):
    return _fit_rates(['--benchmark', '--batch-size', batch_size, '--num-classes', 1000,
                       '--image-shape', ','.join(map(str, shape)), '--dtype', dtype,
                       '--num-examples', batch_size * steps * (repeats + 1)], steps)


def mxnet_real_rates(batch_size, shape, steps, repeats, rec):
    with tempfile.TemporaryDirectory() as folder:
        return _fit_rates(['--data-train', rec, '--batch-size', batch_size,
                           '--image-shape', ','.join(map(str, shape)),
                           '--model-prefix', os.path.join(folder, 'real'),
                           '--keep-checkpoints', 1], steps)


def torch_rates(batch_size, shape, steps, repeats, compiled, bf16=False):
    import torch
    from alexnet_mxnet.inference.torch_alexnet import torch_model
    torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
    torch.manual_seed(0)
    model = torch_model(symbols.get_symbol('alexnet', 1000, shape), shape).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=SGD['lr'], momentum=SGD['momentum'],
                                weight_decay=SGD['wd'])
    loss_fn = torch.nn.CrossEntropyLoss()
    forward = torch.compile(model) if compiled else model
    data = torch.rand((batch_size,) + tuple(shape)) * 2 - 1
    labels = torch.randint(0, 1000, (batch_size,))

    def window():
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with (torch.autocast('cpu', dtype=torch.bfloat16) if bf16
                  else contextlib.nullcontext()):
                loss = loss_fn(forward(data), labels)
            loss.backward()
            optimizer.step()
        return batch_size * steps / (time.perf_counter() - start)
    window()
    return [window() for _ in range(repeats)]


def child(args, shape):
    bf16 = args.child.endswith(BF16)
    framework = args.child[:-len(BF16)] if bf16 else args.child
    if framework in ('mxnet', 'mxnet-stock-lrn'):     # measure() sets the latter's switch
        rates = mxnet_rates(args.batch_size, shape, args.steps, args.repeats,
                            'bfloat16' if bf16 else 'float32')
    elif framework == 'mxnet-real':
        rates = mxnet_real_rates(args.batch_size, shape, args.steps, args.repeats, args.rec)
    else:
        rates = torch_rates(args.batch_size, shape, args.steps, args.repeats,
                            framework == 'torch.compile', bf16)
    print(json.dumps({'rates': rates}))


def measure(args, framework, batch_size, rec=None):
    """Images/s of the timed windows of one child process (``[]`` and a note on failure)."""
    command = [sys.executable, os.path.abspath(__file__), '--child', framework,
               '--batch-size', str(batch_size), '--image-shape', args.image_shape,
               '--steps', str(args.steps), '--repeats', str(args.repeats)]
    if rec:
        command += ['--rec', rec]
    try:
        # Every core for the child: this process's OpenMP (MXNet, imported above) may have
        # pinned its thread to one core (OMP_PROC_BIND), and a child inherits that mask.
        proc = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT,
                              preexec_fn=lambda: os.sched_setaffinity(0, ALL_CORES),
                              env=dict(os.environ, **STOCK_LRN) if framework == 'mxnet-stock-lrn'
                              else None)
    except subprocess.TimeoutExpired:
        return [], '%s batch %d: no result within %d s' % (framework, batch_size, CHILD_TIMEOUT)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        why = (proc.stderr.strip().splitlines() or ['exit status %d' % proc.returncode])[-1]
        return [], '%s batch %d failed: %s' % (framework, batch_size, why)
    return json.loads(lines[-1])['rates'], None


# ---- the real-photo .rec -----------------------------------------------------------------------

def imagenette_rec(datasets, work_dir, images):
    """A ``.rec`` of ``images`` imagenette photos (the same number from every class), shorter
    side 256, made once in ``work_dir``."""
    from alexnet_mxnet.data.im2rec import convert
    source = os.path.join(datasets, 'imagenette2-224', 'train')
    if not os.path.isdir(source):
        raise UsageError('%s not found: give --datasets, or --no-real-data' % source)
    classes = sorted(os.listdir(source))
    per_class = -(-images // len(classes))
    prefix = os.path.join(work_dir, 'imagenette-%d' % (per_class * len(classes)))
    if os.path.isfile(prefix + '.idx'):
        return prefix + '.rec'
    links = tempfile.mkdtemp(prefix='photos-', dir=work_dir)
    try:
        for cls in classes:
            os.makedirs(os.path.join(links, cls))
            for name in sorted(os.listdir(os.path.join(source, cls)))[:per_class]:
                os.symlink(os.path.join(source, cls, name), os.path.join(links, cls, name))
        convert(links, prefix, resize=256, progress=False)
    finally:
        shutil.rmtree(links)
    return prefix + '.rec'


# ---- the table -----------------------------------------------------------------------------------

def _median(values):
    return statistics.median(values) if values else None


def format_table(results, batch_sizes, gflop, peaks):
    """One row per batch size and precision (``peaks``: {'float32': GFLOP/s, 'bfloat16': ...});
    each row's ratios compare frameworks at the same precision."""
    def cell(value, fmt='%.1f'):
        return fmt % value if value is not None else 'n/a'
    lines = ['| batch | precision | mxnet, fit (img/s) | GFLOP/s | of peak | mxnet, LRN from '
             'stock operators | mxnet, fit on imagenette .rec (img/s) | pytorch eager | '
             'torch.compile | mxnet / eager | mxnet / compile |',
             '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for batch in batch_sizes:
        for precision, suffix in (('float32', ''), ('bfloat16', BF16)):
            ours, stock, real, eager, compiled = (
                _median(results.get((f + suffix, batch), []))
                for f in ('mxnet', 'mxnet-stock-lrn', 'mxnet-real', 'pytorch', 'torch.compile'))
            if not (ours or stock or real or eager or compiled):
                continue
            lines.append('| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
                batch, precision, cell(ours), cell(ours and ours * gflop, '%.0f'),
                cell(ours and 100 * ours * gflop / peaks[precision], '%.0f%%'), cell(stock),
                cell(real), cell(eager), cell(compiled),
                cell(ours and eager and ours / eager, '%.2fx'),
                cell(ours and compiled and ours / compiled, '%.2fx')))
    return '\n'.join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    shape = symbols.resolve_image_shape('alexnet', args.image_shape)
    if args.child:
        return child(args, shape)
    frameworks = [f.strip() for f in args.frameworks.split(',') if f.strip()]
    unknown = sorted(set(frameworks) - set(FRAMEWORKS))
    if unknown or not frameworks:
        raise UsageError('--frameworks: choose among %s, got %r' % (', '.join(FRAMEWORKS),
                                                                    args.frameworks))
    if args.no_real_data and 'mxnet-real' in frameworks:
        frameworks.remove('mxnet-real')
    try:
        import torch
    except ImportError:
        torch = None
        frameworks = [f for f in frameworks if not f.startswith(('pytorch', 'torch'))]
        print('PyTorch is not installed: its columns stay n/a. Install the CPU wheel with '
              '`pip install torch==2.13.0` (not plain `torch`, which pulls a CUDA build).',
              file=sys.stderr)
    recs = {}
    if 'mxnet-real' in frameworks:     # one epoch of each is one run's windows
        os.makedirs(args.work_dir, exist_ok=True)
        recs = {batch: imagenette_rec(args.datasets, args.work_dir,
                                      batch * args.steps * (args.repeats + 1))
                for batch in args.batch_sizes}
    results, notes = {}, []
    for round_ in range(1, args.rounds + 1):
        for batch in args.batch_sizes:
            for framework in frameworks:
                print('round %d/%d: %s batch %d ...' % (round_, args.rounds, framework, batch),
                      file=sys.stderr, flush=True)
                rates, note = measure(args, framework, batch, recs.get(batch))
                results.setdefault((framework, batch), []).extend(rates)
                if note:
                    notes.append(note)
    gflop = training_gflop_per_image(shape)
    load = os.getloadavg()
    print('AlexNet training throughput, %s, %s, %s OpenMP threads; mxnet %s%s; median of %d '
          'rounds x %d windows of %d steps, each framework in its own process; %.2f GFLOP per '
          'training image; load average %.2f %.2f %.2f at the end\n' % (
              datetime.date.today().isoformat(), 'x'.join(map(str, shape)),
              os.environ['OMP_NUM_THREADS'], mx.__version__,
              ', torch %s' % torch.__version__ if torch else '', args.rounds, args.repeats,
              args.steps, gflop, *load))
    print(format_table(results, args.batch_sizes, gflop,
                       {'float32': args.peak_gflops, 'bfloat16': args.peak_gflops_bf16}))
    for note in notes:
        print(note)


if __name__ == '__main__':
    run_cli(main)
