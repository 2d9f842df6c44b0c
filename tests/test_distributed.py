"""Real parameter-server jobs over loopback: launch.py + MXNet's dist_sync kvstore.

2 workers and 1 server train on real photos (a small .rec built from ../shared/datasets):
the workers end with identical weights equal to a single-process run with the same global
batch and data order, their shards are disjoint and cover the data, and killing a worker
ends the whole job with a clear error in bounded time, leaving no process behind; under
--max-restarts the job starts again and the trainer resumes (--load-epoch auto). With 2-bit
gradient compression they end with the weights of the scheme worked out in numpy.
"""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import mxnet as mx
import numpy as np
import pytest

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.train.kvstore import create_kvstore
from tests.cluster import Launched
from tests.conftest import REPO
from tests.dist_worker import digests, shard_iter, tiny_net
from tests.fit_helpers import TAG, tagged_processes

PY = sys.executable
WORKER = os.path.join(REPO, 'tests', 'dist_worker.py')
PER_CLASS = 16
BATCH = 4          # per worker; the global batch is 8


@pytest.fixture(scope='module')
def photos_rec(datasets_dir, tmp_path_factory):
    """32 hymenoptera photos (16 ants, 16 bees) as a 72x72 .rec, by the project's converter."""
    from alexnet_mxnet.data.im2rec import convert
    root = os.path.join(datasets_dir, 'hymenoptera', 'train')
    images = [(label, '%s/%s' % (folder, name))
              for label, folder in enumerate(('ants', 'bees'))
              for name in sorted(os.listdir(os.path.join(root, folder)))[:PER_CLASS]]
    lines = ['%d\t%d\t%s' % (index, label, path) for index, (label, path) in enumerate(images)]
    work = tmp_path_factory.mktemp('dist')
    lst = work / 'photos-src.lst'
    lst.write_text('\n'.join(lines) + '\n')
    result = convert(str(lst), str(work / 'photos'), root=root, resize=72, center_crop=True,
                     num_workers=1, progress=False)
    return result.records['train'] if 'train' in result.records else str(work / 'photos.rec')


@pytest.fixture(scope='module')
def init_params(tmp_path_factory):
    mod = mx.mod.Module(tiny_net(2), context=mx.cpu())
    mod.bind([('data', (BATCH,) + (3, 32, 32))], [('softmax_label', (BATCH,))])
    mx.random.seed(3)
    mod.init_params(mx.init.Xavier(magnitude=2))
    args, _ = mod.get_params()
    path = str(tmp_path_factory.mktemp('init') / 'init.params')
    mx.nd.save(path, {'arg:' + k: v for k, v in args.items()})
    return path


def launch(args, tag, stdout=subprocess.PIPE):
    """launch.py with every child tagged, so a test can find any survivor afterwards."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.Popen([PY, os.path.join(REPO, 'launch.py'), '--env', '%s:%s' % (TAG, tag)]
                            + args, cwd=REPO, env=env, stdout=stdout, stderr=subprocess.PIPE,
                            text=True)


def single_process_reference(rec, init, steps):
    """One Module, global batch 8 = worker 0's batch i followed by worker 1's batch i."""
    shards = [[(b.data[0].copy(), b.label[0].copy()) for b in shard_iter(rec, BATCH, 2, part)]
              for part in range(2)]
    mod = mx.mod.Module(tiny_net(2), context=mx.cpu())
    mod.bind([('data', (2 * BATCH, 3, 32, 32))], [('softmax_label', (2 * BATCH,))])
    saved = mx.nd.load(init)
    mod.init_params(arg_params={k[4:]: v for k, v in saved.items()}, aux_params={})
    mod.init_optimizer(optimizer='sgd', optimizer_params={'learning_rate': 0.1})
    for step in range(steps):
        data = mx.nd.concat(shards[0][step][0], shards[1][step][0], dim=0)
        label = mx.nd.concat(shards[0][step][1], shards[1][step][1], dim=0)
        mod.forward_backward(mx.io.DataBatch([data], [label]))
        mod.update()
    return mod.get_params()[0]


@pytest.mark.slow
def test_dist_sync_two_workers_match_one_process(photos_rec, init_params, tmp_path):
    tag = uuid.uuid4().hex
    job = launch(['-n', '2', '-s', '1', '--timeout', '120', PY, WORKER, '--rec', photos_rec,
                  '--init', init_params, '--out', str(tmp_path), '--batch-size', str(BATCH)], tag)
    out, err = job.communicate(timeout=150)
    assert job.returncode == 0, out + err
    assert {'[worker 0] worker rank', '[worker 1] worker rank'} <= {
        line[:len('[worker 0] worker rank')] for line in out.splitlines()}
    assert not tagged_processes(tag)

    runs = [json.loads((tmp_path / ('rank%d.json' % r)).read_text()) for r in range(2)]
    weights = [mx.nd.load(str(tmp_path / ('rank%d.params' % r))) for r in range(2)]
    # both workers hold exactly the server's weights
    assert sorted(weights[0]) == sorted(weights[1]) == ['conv1_bias', 'conv1_weight',
                                                        'fc1_bias', 'fc1_weight']
    for name in weights[0]:
        np.testing.assert_array_equal(weights[0][name].asnumpy(), weights[1][name].asnumpy())

    # the shards: disjoint, together the whole file, each read in file order
    everything = [d for batch in shard_iter(photos_rec, BATCH, 1, 0) for d in digests(batch)]
    seen = [[d for batch in run['batches'] for d in batch] for run in runs]
    assert len(everything) == 2 * PER_CLASS == len(set(everything))
    assert not set(seen[0]) & set(seen[1])
    assert seen[0] + seen[1] == everything
    steps = len(runs[0]['batches'])
    assert steps == len(runs[1]['batches']) == PER_CLASS // BATCH

    reference = single_process_reference(photos_rec, init_params, steps)
    for name, value in reference.items():
        initial = mx.nd.load(init_params)['arg:' + name].asnumpy()
        assert not np.allclose(initial, value.asnumpy())   # training did move it
        np.testing.assert_allclose(weights[0][name].asnumpy(), value.asnumpy(),
                                   rtol=1e-4, atol=1e-6)


def two_bit_reference(rec, init, threshold, lr=0.1):
    """dist_sync with 2-bit gradient compression as MXNet specifies it, in numpy: each worker
    adds its gradient to its residual, sends +T, -T or 0 per value (what reaches T) and keeps
    the rest; the server sums what the workers sent and takes an SGD step over the global
    batch. Returns the final weights and how many values were ever sent as 0 and as +-T."""
    symbol = tiny_net(2)
    exe = symbol.simple_bind(mx.cpu(), data=(BATCH, 3, 32, 32), softmax_label=(BATCH,))
    weights = {k[4:]: v.asnumpy() for k, v in mx.nd.load(init).items()}
    shards = [[(b.data[0].asnumpy(), b.label[0].asnumpy()) for b in shard_iter(rec, BATCH, 2, part)]
              for part in range(2)]
    residual = [{k: np.zeros_like(v) for k, v in weights.items()} for _ in shards]
    sent = {0: 0, 1: 0}
    for step in range(len(shards[0])):
        total = {k: np.zeros_like(v) for k, v in weights.items()}
        for part, shard in enumerate(shards):
            for name, value in weights.items():
                exe.arg_dict[name][:] = value
            exe.arg_dict['data'][:], exe.arg_dict['softmax_label'][:] = shard[step]
            exe.forward(is_train=True)
            exe.backward()
            for name in weights:
                r = residual[part][name] + exe.grad_dict[name].asnumpy()
                q = np.where(r >= threshold, threshold,
                             np.where(r <= -threshold, -threshold, 0)).astype(np.float32)
                residual[part][name] = r - q
                total[name] += q
                sent[1] += int(np.count_nonzero(q))
                sent[0] += q.size - int(np.count_nonzero(q))
        for name in weights:
            weights[name] = weights[name] - lr * total[name] / (2 * BATCH)
    return weights, sent


@pytest.mark.slow
def test_2bit_gradient_compression_sends_what_mxnet_specifies(photos_rec, init_params, tmp_path):
    """--gc-type 2bit through the trainer's create_kvstore (MXNet 1.9.1's pushpull refuses a
    compressed kvstore; ours pushes, then pulls): the workers end with exactly the weights
    of the 2-bit scheme worked out in numpy, on real photos."""
    threshold = 5.0
    tag = uuid.uuid4().hex
    job = launch(['-n', '2', '-s', '1', '--timeout', '120', PY, WORKER, '--rec', photos_rec,
                  '--init', init_params, '--out', str(tmp_path), '--batch-size', str(BATCH),
                  '--gc-type', '2bit', '--gc-threshold', str(threshold)], tag)
    out, err = job.communicate(timeout=150)
    assert job.returncode == 0, out + err
    assert not tagged_processes(tag)
    expected, sent = two_bit_reference(photos_rec, init_params, threshold)
    assert sent[0] and sent[1]           # some values held back, some sent: not trivial
    uncompressed = single_process_reference(photos_rec, init_params, PER_CLASS // BATCH)
    for rank in range(2):
        weights = mx.nd.load(str(tmp_path / ('rank%d.params' % rank)))
        for name, value in expected.items():
            np.testing.assert_allclose(weights[name].asnumpy(), value, rtol=1e-6, atol=1e-7)
            assert not np.allclose(value, uncompressed[name].asnumpy())


@pytest.mark.slow
def test_killing_a_worker_ends_the_job_with_a_clear_error(photos_rec, init_params, tmp_path):
    tag = uuid.uuid4().hex
    grace = 3
    job = launch(['-n', '2', '-s', '1', '--grace', str(grace), '--timeout', '120', PY, WORKER,
                  '--rec', photos_rec, '--init', init_params, '--out', str(tmp_path), '--hold'],
                 tag)
    markers = [tmp_path / ('training-%d' % rank) for rank in range(2)]
    deadline = time.monotonic() + 60
    while not all(m.exists() and m.read_text() for m in markers) and time.monotonic() < deadline:
        assert job.poll() is None, job.communicate()
        time.sleep(0.1)
    assert all(m.exists() for m in markers), 'workers never started training'
    victim = int(markers[1].read_text())
    assert len(tagged_processes(tag)) == 4        # scheduler, server, 2 workers
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    out, err = job.communicate(timeout=60)
    stopped_in = time.monotonic() - killed
    assert job.returncode == 128 + signal.SIGKILL
    error = [line for line in err.splitlines() if 'error' in line]
    assert len(error) == 1 and 'was killed by SIGKILL; stopping the job' in error[0], err
    assert stopped_in < grace + 8
    assert not tagged_processes(tag)


# --- the real trainer under the launcher --------------------------------------------------

def train_args(rec, prefix, *extra):
    return [PY, os.path.join(REPO, 'train_imagenet.py'), '--kv-store', 'dist_sync',
            '--data-train', rec, '--image-shape', '3,67,67', '--batch-size', str(BATCH),
            '--dropout', '0', '--lr', '0.001', '--no-progress', '--disp-batches', '1',
            '--model-prefix', prefix] + list(extra)


def worker_pids(tag):
    pids = []
    for pid in tagged_processes(tag):
        try:
            with open('/proc/%d/environ' % pid, 'rb') as handle:
                if b'DMLC_ROLE=worker' in handle.read().split(b'\0'):
                    pids.append(pid)
        except OSError:
            pass
    return pids


def whole_set_top1(prefix, epoch, rec):
    """Top-1 of checkpoint ``epoch`` on every record of ``rec`` (what rank 0 must report)."""
    import iterators
    data = iterators.get_val_iter(rec, BATCH, (3, 67, 67))
    mod = mx.mod.Module.load(prefix, epoch, context=mx.cpu())
    mod.bind(data.provide_data, data.provide_label, for_training=False)
    right = total = 0
    for batch in data:
        mod.forward(batch, is_train=False)
        real = BATCH - batch.pad
        predicted = mod.get_outputs()[0].asnumpy()[:real].argmax(axis=1)
        right += int((predicted == batch.label[0].asnumpy()[:real]).sum())
        total += real
    assert total == 2 * PER_CLASS
    return right / total


@pytest.mark.slow
def test_train_imagenet_dist_sync_trains_resumes_and_survives_a_killed_worker(photos_rec,
                                                                               tmp_path):
    prefix = str(tmp_path / 'ck' / 'alexnet')
    # 1. one epoch on 2 workers: 32 images / (2 workers x batch 4) = 4 updates per epoch;
    # every worker logs with its kvstore rank; rank 0 scores the whole validation set
    tag = uuid.uuid4().hex
    same = ['--data-val', photos_rec, '--lr-step-epochs', '2']   # the run's flags, and a restart's
    job = launch(['-n', '2', '-s', '1', '--timeout', '180'] + train_args(
        photos_rec, prefix, '--num-epochs', '1', *same), tag)
    out, err = job.communicate(timeout=200)
    assert job.returncode == 0, out + err
    lines = out.splitlines()
    for rank in range(2):
        assert any('[rank %d/2] training alexnet' % rank in line
                   and 'batch 4 per worker x 2 workers = 8, 4 updates per epoch' in line
                   for line in lines), out
    assert {line.split(']')[0] for line in lines if '] training alexnet' in line} == {
        '[worker 0', '[worker 1'}
    with open(prefix + '-metrics.csv') as handle:
        row = dict(zip(*[line.split(',') for line in handle.read().splitlines()]))
    assert float(row['val_top1']) == pytest.approx(whole_set_top1(prefix, 1, photos_rec), abs=1e-4)
    assert not tagged_processes(tag)
    sym, first, _ = mx.model.load_checkpoint(prefix, 1)
    assert 'fc3_weight' in first and sym.list_outputs() == ['softmax_output']

    # 2. the same command for two more epochs, resuming by itself (--load-epoch auto) under
    # --max-restarts 1; a worker killed once epoch 2 is under way ends that run within 5 s, the
    # launcher starts the job again, and it continues from the newest checkpoint to epoch 3
    job = Launched(['-n', '2', '-s', '1', '--grace', '2', '--timeout', '240', '--max-restarts',
                    '1'] + train_args(photos_rec, prefix, '--num-epochs', '3', '--load-epoch',
                                      'auto', *same))
    deadline = time.monotonic() + 120
    while 'Epoch[2] Batch' not in job.output:
        assert job.proc.poll() is None and time.monotonic() < deadline, job.output
        time.sleep(0.1)
    os.kill(worker_pids(job.tag)[0], signal.SIGKILL)
    killed = time.monotonic()
    status, output, _ = job.finish(timeout=240)
    assert status == 0, output
    launcher = [(when, line) for when, line in job.lines if line.startswith('launch: ')]
    cause = re.fullmatch(r'launch: error: (worker [01] was killed by SIGKILL); stopping the job',
                         launcher[0][1])
    assert cause, output
    assert launcher[1][1] == 'launch: restart 1 of 1 after: ' + cause.group(1)
    assert launcher[1][0] - killed < 5
    assert not [line for _, line in launcher[2:] if 'error' in line], output
    restarted = output[output.index(launcher[1][1]):]
    resumed = re.findall(r'--load-epoch auto: resuming %s from epoch (\d+)' % re.escape(prefix),
                         restarted)
    assert len(resumed) == 2 and resumed[0] == resumed[1], output   # both workers
    start = int(resumed[0])
    assert not tagged_processes(job.tag)

    # 3. epoch 1 is intact; epochs, metrics and lr schedule run on across the restart
    _, again, _ = mx.model.load_checkpoint(prefix, 1)
    for name, value in first.items():
        np.testing.assert_array_equal(value.asnumpy(), again[name].asnumpy())
    with open(prefix + '-metrics.csv') as handle:
        rows = list(csv.DictReader(handle))
    assert [row['epoch'] for row in rows] == ['1', '2', '3']
    assert [float(row['lr']) for row in rows] == pytest.approx([1e-3, 1e-3, 1e-4])
    meta = json.load(open(prefix + '-meta.json'))
    updates = {int(e): c['num_update'] for e, c in meta['checkpoints'].items()}
    assert meta['epoch'] == 3 and updates[3] == updates[start] + 4 * (3 - start)


@pytest.mark.slow
def test_workers_stopped_by_sigterm_say_only_what_they_did(photos_rec, tmp_path):
    """Each worker stops after its current batch: rank 0 saves the partial epoch, rank 1
    writes nothing and must not claim a checkpoint. (The workers may stop one batch apart;
    the later one then waits on the kvstore forever, so the launcher ends the job.)"""
    prefix = str(tmp_path / 'alexnet')
    tag = uuid.uuid4().hex
    log = tmp_path / 'job.log'

    def stopped():
        lines = [line for line in log.read_text().splitlines() if 'stopped in epoch' in line]
        return {rank: [line for line in lines if '[rank %d/2]' % rank in line] for rank in (0, 1)}
    with open(str(log), 'w') as handle:
        job = launch(['-n', '2', '-s', '1', '--grace', '3', '--timeout', '120'] + train_args(
            photos_rec, prefix, '--num-epochs', '50'), tag, stdout=handle)
        try:
            deadline = time.monotonic() + 90
            while 'Epoch[2] Batch [1-2]' not in log.read_text() and time.monotonic() < deadline:
                assert job.poll() is None, log.read_text()
                time.sleep(0.05)
            for pid in worker_pids(tag):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while not all(stopped().values()) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            job.terminate()             # the launcher stops what is left of the job
            job.communicate(timeout=30)
    assert not tagged_processes(tag)
    by_rank = stopped()
    assert len(by_rank[0]) == len(by_rank[1]) == 1, log.read_text()
    assert 'saved %s-0002.params (partial epoch)' % prefix in by_rank[0][0]
    assert by_rank[1][0].endswith('nothing saved: rank 0 writes the checkpoints')
    meta = json.load(open(prefix + '-meta.json'))
    assert meta['epoch'] == 2 and meta['checkpoints']['2']['partial']


@pytest.mark.parametrize('kv_type,contexts', [('device', [mx.cpu()]),
                                              ('local', [mx.cpu(0), mx.cpu(1)])])
def test_gradient_compression_needs_a_kvstore_that_sends(kv_type, contexts):
    with pytest.raises(UsageError, match='--gc-type 2bit compresses what a kvstore sends: it '
                                         'needs --kv-store dist_sync'):
        create_kvstore(kv_type, contexts, '2bit', 0.5)


@pytest.mark.slow
def test_train_imagenet_compresses_gradients_when_asked(photos_rec, tmp_path):
    """train_imagenet.py --gc-type 2bit on real photos: every worker's kvstore compresses (it
    says so), the job trains and checkpoints, and the weights differ from the same job
    uncompressed (2-bit values with the residual carried over are not the gradients)."""
    weights = {}
    for gc_type in ('none', '2bit'):
        prefix = str(tmp_path / gc_type / 'alexnet')
        tag = uuid.uuid4().hex
        job = launch(['-n', '2', '-s', '1', '--timeout', '180'] + train_args(
            photos_rec, prefix, '--num-epochs', '1', '--gc-type', gc_type), tag)
        out, err = job.communicate(timeout=200)
        assert job.returncode == 0, out + err
        said = [line for line in out.splitlines()
                if 'gradient compression 2bit, threshold 0.5' in line]
        assert len(said) == (2 if gc_type == '2bit' else 0), out
        assert not tagged_processes(tag)
        weights[gc_type] = mx.model.load_checkpoint(prefix, 1)[1]['fc1_weight'].asnumpy()
    assert np.all(np.isfinite(weights['2bit']))
    assert not np.allclose(weights['2bit'], weights['none'])


def test_gradient_compression_on_one_device_is_a_one_line_error(tmp_path):
    result = subprocess.run([PY, os.path.join(REPO, 'train_imagenet.py'), '--benchmark',
                             '--num-epochs', '1', '--gc-type', '2bit'], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'train_imagenet.py: error: --gc-type 2bit compresses what a kvstore sends: it needs '
        '--kv-store dist_sync (or another dist_*), or several --gpus with --kv-store device']
