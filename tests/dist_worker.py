"""A tiny dist-kvstore worker for tests/test_distributed.py (run under launch.py).

Trains a small convnet on its kvstore shard of a .rec and writes, into --out:
``rank{R}.json`` (the records it saw, per batch, as content digests) and ``rank{R}.params``
(its final weights). ``--hold`` keeps it training batch after batch so a test can kill it;
``--gc-type 2bit`` compresses what it pushes, through the trainer's ``create_kvstore``.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import mxnet as mx

import iterators
from alexnet_mxnet.train.kvstore import create_kvstore

IMAGE_SHAPE = (3, 32, 32)


def tiny_net(num_classes):
    data = mx.sym.Variable('data')
    net = mx.sym.Convolution(data, num_filter=8, kernel=(3, 3), stride=(2, 2), name='conv1')
    net = mx.sym.Activation(net, act_type='relu')
    net = mx.sym.Pooling(net, kernel=(2, 2), stride=(2, 2), pool_type='max')
    net = mx.sym.FullyConnected(mx.sym.flatten(net), num_hidden=num_classes, name='fc1')
    return mx.sym.SoftmaxOutput(net, name='softmax')


def shard_iter(rec, batch_size, num_parts, part_index):
    """The project's validation pipeline on one kvstore shard: file order, center crop, no
    augmentation, so every run sees the same pixels."""
    return iterators.get_val_iter(rec, batch_size, IMAGE_SHAPE, num_parts=num_parts,
                                  part_index=part_index, num_threads=1)


def digests(batch):
    """One digest per image: its pixels and label, so shards can be compared by content."""
    data, label = batch.data[0].asnumpy(), batch.label[0].asnumpy()
    return [hashlib.sha1(data[i].tobytes() + label[i].tobytes()).hexdigest()
            for i in range(data.shape[0])]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--rec', required=True)
    parser.add_argument('--init', required=True, help='initial .params (same on every worker)')
    parser.add_argument('--out', required=True)
    parser.add_argument('--batch-size', type=int, default=4, help='per worker')
    parser.add_argument('--num-classes', type=int, default=2)
    parser.add_argument('--lr', type=float, default=0.1)
    parser.add_argument('--hold', action='store_true', help='train until killed')
    parser.add_argument('--gc-type', default='none')
    parser.add_argument('--gc-threshold', type=float, default=0.5)
    args = parser.parse_args()

    kv = create_kvstore('dist_sync', [mx.cpu()], args.gc_type, args.gc_threshold)
    print('worker rank %d of %d' % (kv.rank, kv.num_workers), flush=True)
    train = shard_iter(args.rec, args.batch_size, kv.num_workers, kv.rank)
    mod = mx.mod.Module(tiny_net(args.num_classes), context=mx.cpu())
    mod.bind(train.provide_data, train.provide_label)
    saved = mx.nd.load(args.init)
    mod.init_params(arg_params={k[4:]: v for k, v in saved.items() if k.startswith('arg:')},
                    aux_params={}, allow_missing=False)
    mod.init_optimizer(kvstore=kv, optimizer='sgd', optimizer_params={'learning_rate': args.lr})
    seen = []
    while True:
        train.reset()
        for batch in train:
            mod.forward_backward(batch)
            mod.update()
            seen.append(digests(batch))
            if args.hold:   # the marker a test reads is replaced whole, never seen empty
                marker = os.path.join(args.out, 'training-%d' % kv.rank)
                with open(marker + '.tmp', 'w') as handle:
                    handle.write(str(os.getpid()))
                os.replace(marker + '.tmp', marker)
                time.sleep(0.05)
        if not args.hold:
            break
    arg_params, _ = mod.get_params()
    mx.nd.save(os.path.join(args.out, 'rank%d.params' % kv.rank), arg_params)
    with open(os.path.join(args.out, 'rank%d.json' % kv.rank), 'w') as handle:
        json.dump({'rank': kv.rank, 'num_workers': kv.num_workers, 'batches': seen,
                   'pid': os.getpid()}, handle)
    print('worker rank %d done: %d batches' % (kv.rank, len(seen)), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
