"""Training flags, in argument groups every training CLI shares (MXNet example names).

Flags whose good value depends on the data (batch size, epochs, lr, ...) default to
``None`` and are resolved by ``resolve_defaults``: the AlexNet/ImageNet recipe for real
data, a small CPU-sized recipe for the built-in digits demo (no ``--data-train``).
"""
from alexnet_mxnet.base.argtypes import (FRACTION, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE,
                                         POSITIVE_INT, bounded)
from alexnet_mxnet.base.cli import OneLineErrorParser, add_progress_arg
from alexnet_mxnet.base.devices import add_device_args
from alexnet_mxnet.train.kvstore import add_kvstore_args
from alexnet_mxnet.train.lr_schedule import INITIALIZERS, SCHEDULERS
from alexnet_mxnet.train.resume import load_epoch_flag
from iterators import add_augment_args, add_data_args, add_normalize_args
from iterators.normalize import STD_RGB
from symbols.args import add_network_args

# The paper / Caffe recipe: SGD, momentum 0.9, weight decay 5e-4, batch 256, lr 0.01 divided
# by 10 at fixed epochs (torchvision's reference steps every 30 of 90 epochs).
IMAGENET_DEFAULTS = dict(batch_size=256, num_epochs=90, lr=0.01, lr_step_epochs='30,60,80',
                         initializer='alexnet', num_classes=1000, image_shape=None, rgb_std=None)
# Digits demo: 1,438 training images at 67x67 (the smallest AlexNet input) on the CPU. The
# paper's N(0, 0.01) start needs many epochs to leave chance level; a fan-in scaled start on
# standardised pixels learns the digits in a few, and a final lr step settles it.
DEMO_DEFAULTS = dict(batch_size=32, num_epochs=10, lr=0.01, lr_step_epochs='7',
                     initializer='xavier', num_classes=10, image_shape=(3, 67, 67),
                     rgb_std=STD_RGB)


def _both(key):
    return '(default: %s; digits demo: %s)' % (IMAGENET_DEFAULTS[key] or 'none',
                                                DEMO_DEFAULTS[key] or 'none')


def add_fit_args(parser):
    """Optimisation, schedule, logging and checkpoint flags."""
    group = parser.add_argument_group('training')
    group.add_argument('--batch-size', type=POSITIVE_INT, default=None,
                       help='batch per step, split over the devices (with dist_*: per worker) '
                            + _both('batch_size'))
    group.add_argument('--num-epochs', type=POSITIVE_INT, default=None,
                       help='epochs to train (counting resumed ones) ' + _both('num_epochs'))
    group.add_argument('--optimizer', default='sgd',
                       help='any mx.optimizer name: sgd, nag, adam, rmsprop... '
                            '(default: %(default)s)')
    group.add_argument('--lr', type=POSITIVE, default=None,
                       help='initial learning rate ' + _both('lr'))
    group.add_argument('--mom', type=FRACTION, default=0.9,
                       help='momentum for sgd/nag (default: %(default)s)')
    group.add_argument('--wd', type=NON_NEGATIVE, default=5e-4,
                       help='weight decay (default: %(default)s)')
    group.add_argument('--lr-scheduler', default='step', choices=SCHEDULERS,
                       help='step: multiply by --lr-factor at --lr-step-epochs; poly, cosine: '
                            'decay to 0 over the run (default: %(default)s)')
    group.add_argument('--lr-factor', type=bounded(float, 0, 1, low_open=True), default=0.1,
                       help='step scheduler\'s factor (default: %(default)s)')
    group.add_argument('--lr-step-epochs', default=None, metavar='30,60',
                       help='epochs after which the step scheduler multiplies the lr '
                            + _both('lr_step_epochs'))
    group.add_argument('--warmup-epochs', type=NON_NEGATIVE, default=0,
                       help='linear lr warm-up from 0 over this many epochs (default: %(default)s)')
    group.add_argument('--initializer', default=None, choices=INITIALIZERS,
                       help='alexnet: the paper\'s N(0, 0.01) weights, biases 1 in conv2/4/5 and '
                            'fc1/fc2; xavier: Glorot (MXNet\'s default); msra: He '
                            + _both('initializer'))
    group.add_argument('--dropout', type=FRACTION, default=0.5,
                       help='dropout of fc1/fc2; 0 removes it (default: %(default)s)')
    group.add_argument('--num-examples', type=POSITIVE_INT, default=None,
                       help='training images per epoch, for the lr schedule (default: the '
                            'count in the .idx file)')
    group.add_argument('--top-k', type=NON_NEGATIVE_INT, default=5,
                       help='also report top-k accuracy; 0 turns it off (default: %(default)s)')
    group.add_argument('--seed', type=int, default=0,
                       help='seed for initialisation, dropout and data order '
                            '(default: %(default)s)')
    group.add_argument('--disp-batches', type=NON_NEGATIVE_INT, default=20,
                       help='log a Speedometer line every N batches; 0: never '
                            '(default: %(default)s)')
    group.add_argument('--model-prefix', default=None,
                       help='checkpoint prefix P: writes P-symbol.json, P-NNNN.params, '
                            'P-NNNN.states, P-meta.json, P-metrics.csv, P-curves.png, '
                            'P-best.params (default: checkpoints/NETWORK, or '
                            'checkpoints/digits-alexnet for the demo)')
    group.add_argument('--load-epoch', type=load_epoch_flag, default=None, metavar='N|auto',
                       help='resume from P-NNNN.params/.states of --model-prefix; auto: from '
                            'its newest complete checkpoint, or start the run when there is none '
                            '(one command for the first start and every restart)')
    group.add_argument('--overwrite', action='store_true',
                       help='replace the run that --model-prefix already holds (all its files '
                            'are deleted once the new run has passed its checks); without it, '
                            'such a prefix is refused unless --load-epoch resumes it')
    group.add_argument('--keep-checkpoints', type=NON_NEGATIVE_INT, default=3, metavar='K',
                       help='keep the .params/.states of the last K epochs only (AlexNet '
                            'writes ~480 MB per epoch at 227x227); P-best.params is always '
                            'kept; 0 keeps every epoch (default: %(default)s)')
    group.add_argument('--test-io', action='store_true',
                       help='only read the training data for one epoch and report its speed')
    group.add_argument('--benchmark', action='store_true',
                       help='train on synthetic data (no files needed): measures the compute speed')
    group.add_argument('--monitor', type=NON_NEGATIVE_INT, default=0, metavar='N',
                       help='print weight/gradient/output norms every N batches (default: off)')
    return group


def add_recipe_args(parser):
    """Regularisation of the modern recipes (timm, torchvision's references, GluonCV): label
    smoothing, mixup/cutmix and an average of the weights."""
    group = parser.add_argument_group('recipe (regularisation)')
    group.add_argument('--label-smoothing', type=FRACTION, default=0.0, metavar='EPS',
                       help='train towards 1-EPS on the true class and EPS/(classes-1) on each '
                            'other (SoftmaxOutput\'s smooth_alpha; default: %(default)s, off)')
    group.add_argument('--mixup', type=NON_NEGATIVE, default=0.0, metavar='ALPHA',
                       help='blend each training image with another of the batch, and their '
                            'labels, by a share drawn from Beta(ALPHA, ALPHA), e.g. 0.2 '
                            '(default: %(default)s, off)')
    group.add_argument('--cutmix', type=NON_NEGATIVE, default=0.0, metavar='ALPHA',
                       help='paste a box of another image of the batch, its label weighted by '
                            'the box\'s area (from Beta(ALPHA, ALPHA)), e.g. 1.0; with --mixup, '
                            'each batch uses one of the two (default: %(default)s, off)')
    group.add_argument('--mixup-off-epochs', type=NON_NEGATIVE_INT, default=0, metavar='N',
                       help='train the last N epochs without mixup/cutmix (default: '
                            '%(default)s)')
    group.add_argument('--model-ema', type=FRACTION, default=0.0, metavar='DECAY',
                       help='keep an exponential moving average of the weights, updated every '
                            'step (decay min(DECAY, (1+t)/(10+t)) at update t), validated each '
                            'epoch and saved as P-NNNN-ema.params, e.g. 0.999 (default: '
                            '%(default)s, off)')
    return group


def add_finetune_args(parser):
    """``--pretrained`` and how the transferred layers train."""
    group = parser.add_argument_group('fine-tuning')
    group.add_argument('--pretrained', default=None, metavar='FILE.params',
                       help='start from these weights, with a new fc3 for --num-classes: a '
                            'checkpoint\'s P-NNNN.params, or a GluonCV AlexNet .params file '
                            '(needs --network alexnet-gluon)')
    group.add_argument('--freeze-features', action='store_true',
                       help='with --pretrained: keep the conv layers fixed')
    group.add_argument('--features-lr-mult', type=NON_NEGATIVE, default=1.0,
                       help='with --pretrained: lr multiplier of the conv layers, e.g. 0.1 '
                            '(default: %(default)s)')
    return group


def build_train_parser(prog=None):
    """The parser of ``train_imagenet.py``."""
    parser = OneLineErrorParser(
        prog=prog,
        description='Train AlexNet with mx.mod.Module on every listed device. Without '
                    '--data-train it trains on the built-in digits demo (scikit-learn\'s '
                    'handwritten digits as images), on the CPU, in a few minutes, with the '
                    '"digits demo" defaults below and --rgb-std %s.'
                    % ','.join(map(str, STD_RGB)))
    add_network_args(parser, source='labels')
    add_data_args(parser)
    add_normalize_args(parser)
    add_augment_args(parser)
    add_device_args(parser)
    add_kvstore_args(parser)
    add_fit_args(parser)
    add_recipe_args(parser)
    add_finetune_args(parser)
    add_progress_arg(parser)
    return parser


def resolve_defaults(args, demo):
    """Fill the ``None`` data-dependent flags from the demo or the ImageNet recipe."""
    for key, value in (DEMO_DEFAULTS if demo else IMAGENET_DEFAULTS).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args
