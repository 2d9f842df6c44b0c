"""Real resource managers: launch.py --launcher slurm (one srun step in a salloc allocation of a
real one-node Slurm) and --launcher mpi (one MPMD mpirun of a real Open MPI), over loopback.

The job is tests/dist_worker.py's small dist_sync network on 32 real photos, 2 workers and 1
server: each manager's job ends with exactly the local launcher's weights, prefixes every line
with its role, and a worker killed mid-epoch ends the whole job within 5 s with the worker's
status and one error line, leaving no process behind.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from alexnet_mxnet.base import checkpoint as ckpt
from tests.cluster import Jobs, Launched, missing_mpi, mpi_env, slurm_cluster  # noqa: F401
from tests.conftest import REPO
from tests.fit_helpers import tagged_processes
from tests.test_distributed import init_params, photos_rec  # noqa: F401 (fixtures)
from tests.test_distributed import train_args, worker_pids

PY = sys.executable
WORKER = os.path.join(REPO, 'tests', 'dist_worker.py')


def worker_job(rec, init, out, *extra):
    return ['-n', '2', '-s', '1', '--timeout', '120', PY, WORKER, '--rec', rec, '--init', init,
            '--out', str(out)] + list(extra)


@pytest.fixture
def slurm_jobs(slurm_cluster):
    """``start(args)``: launch.py inside ``salloc -n 4`` of the real Slurm. Afterwards Slurm
    must hold no job (launch.py gives its allocation back); every job is cancelled either way."""
    jobs = Jobs(['--launcher', 'slurm', '--interface', 'lo'],
                wrapper=['salloc', '--quiet', '-n', '4'], env=slurm_cluster.env)
    yield jobs
    failed_midway = jobs.close()
    left = slurm_cluster.cancel_all()
    assert failed_midway or not left, 'Slurm jobs left: %s' % left


@pytest.fixture(params=['slurm', 'mpi'])
def launcher(request):
    """``start(args, grace=5)``: launch.py through the real Slurm or Open MPI."""
    if request.param == 'slurm':
        yield request.getfixturevalue('slurm_jobs')
        return
    reason = missing_mpi()
    if reason:
        pytest.skip(reason)
    # --oversubscribe: 4 processes on 2 cores
    jobs = Jobs(['--launcher', 'mpi', '--interface', 'lo', '--launcher-args=--oversubscribe'],
                env=mpi_env())
    yield jobs
    jobs.close()


@pytest.fixture(scope='module')
def local_weights(photos_rec, init_params, tmp_path_factory):  # noqa: F811
    """Both workers' final weights from the same job under the local launcher."""
    out = tmp_path_factory.mktemp('local')
    job = Launched(worker_job(photos_rec, init_params, out))
    status, output, _ = job.finish(timeout=150)
    assert status == 0, output
    return [mx.nd.load(str(out / ('rank%d.params' % rank))) for rank in range(2)]


@pytest.mark.slow
def test_a_dist_sync_job_matches_the_local_launcher(launcher, photos_rec,  # noqa: F811
                                                    init_params, local_weights, tmp_path):
    job = launcher(worker_job(photos_rec, init_params, tmp_path))
    status, output, _ = job.finish(timeout=150)
    assert status == 0, output
    lines = output.splitlines()
    for slot in range(2):     # the role prefix, and ps-lite's own choice of rank
        assert any(re.fullmatch(r'\[worker %d\] worker rank [01] of 2' % slot, line)
                   for line in lines), output
    assert not [line for line in lines if 'launch-task' in line]   # reports are not output
    assert not tagged_processes(job.tag)
    for rank in range(2):
        weights = mx.nd.load(str(tmp_path / ('rank%d.params' % rank)))
        assert sorted(weights) == sorted(local_weights[rank])
        for name, value in weights.items():
            np.testing.assert_array_equal(value.asnumpy(), local_weights[rank][name].asnumpy())


@pytest.mark.slow
def test_a_killed_worker_ends_the_job_within_5_s(launcher, photos_rec,  # noqa: F811
                                                 init_params, tmp_path):
    job = launcher(worker_job(photos_rec, init_params, tmp_path, '--hold'), grace=2)
    markers = [tmp_path / ('training-%d' % rank) for rank in range(2)]
    deadline = time.monotonic() + 90
    while not all(m.exists() and m.read_text() for m in markers):
        assert job.proc.poll() is None and time.monotonic() < deadline, job.output
        time.sleep(0.1)
    assert len(tagged_processes(job.tag)) >= 4      # scheduler, server, 2 workers (+ wrappers)
    os.kill(int(markers[1].read_text()), signal.SIGKILL)
    killed = time.monotonic()
    status, output, ended = job.finish(timeout=60)
    assert ended - killed < 5, output
    assert status == 128 + signal.SIGKILL, output
    errors = [line for line in output.splitlines() if line.startswith('launch: error')]
    assert len(errors) == 1 and re.fullmatch(
        r'launch: error: worker [01] was killed by SIGKILL; stopping the job', errors[0]), output
    deadline = time.monotonic() + 5
    while tagged_processes(job.tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tagged_processes(job.tag)


@pytest.mark.slow
def test_max_restarts_resumes_a_training_job_after_a_killed_worker(launcher, photos_rec,  # noqa: F811
                                                                     tmp_path):
    """The real trainer under the resource manager: a worker SIGKILLed after checkpoint 1 ends
    that srun step or mpirun, launch.py starts the job again, and both workers resume from
    the newest checkpoint (--load-epoch auto) and finish."""
    prefix = str(tmp_path / 'ck' / 'alexnet')
    job = launcher(['-n', '2', '-s', '1', '--timeout', '240', '--max-restarts', '1']
                   + train_args(photos_rec, prefix, '--num-epochs', '3', '--load-epoch', 'auto'),
                   grace=2)
    # Rank 0 may still be writing checkpoint 1 when the other worker logs epoch 2: wait for it.
    deadline = time.monotonic() + 150
    while ckpt.latest_epoch(prefix) is None or 'Epoch[2] Batch' not in job.output:
        assert job.proc.poll() is None and time.monotonic() < deadline, job.output
        time.sleep(0.1)
    saved = ckpt.latest_epoch(prefix)
    os.kill(worker_pids(job.tag)[0], signal.SIGKILL)
    status, output, _ = job.finish(timeout=240)
    assert status == 0, output
    restart = re.search(r'launch: restart 1 of 1 after: worker [01] was killed by SIGKILL', output)
    assert restart, output
    resumed = re.findall(r'--load-epoch auto: resuming %s from epoch (\d+)' % re.escape(prefix),
                         output[restart.end():])
    assert len(resumed) == 2 and set(resumed) == {resumed[0]}, output      # both workers alike
    assert int(resumed[0]) >= saved, output
    assert json.load(open(prefix + '-meta.json'))['epoch'] == 3
    assert not tagged_processes(job.tag)


def launch_py_of(job):
    """The PID of launch.py itself (under salloc, its child)."""
    for pid in tagged_processes(job.tag):
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                argv = handle.read().split(b'\0')
        except OSError:
            continue
        if len(argv) > 1 and argv[1].endswith(b'launch.py'):
            return pid
    raise AssertionError('launch.py not found:\n' + job.output)


def signal_recorder(folder):
    """A worker that records every SIGTERM it gets (in ``signals-PID``), then exits 143 a
    second after the first; ``signals-PID`` appears empty when it is ready."""
    worker = folder / 'worker.py'
    worker.write_text('import os, signal, sys, time\n'
                      'record = os.path.join(os.path.dirname(__file__), "signals-%d" % os.getpid())\n'
                      'def stopped(*_):\n'
                      '    open(record, "a").write("TERM\\n")\n'
                      '    time.sleep(1)       # time for a second signal to arrive\n'
                      '    sys.exit(143)\n'
                      'signal.signal(signal.SIGTERM, stopped)\n'
                      'open(record, "w").close()\n'
                      'time.sleep(600)\n')
    return ['-n', '2', '-s', '1', '--timeout', '120', PY, str(worker)]


def wait_ready(job, folder):
    deadline = time.monotonic() + 60
    while len(list(folder.glob('signals-*'))) < 2:
        assert job.proc.poll() is None and time.monotonic() < deadline, job.output
        time.sleep(0.1)


def ends_after_one_sigterm_each(job, folder):
    """The job ends with status 143, every worker having had SIGTERM once; returns the output."""
    status, output, _ = job.finish(timeout=60)
    assert status == 128 + signal.SIGTERM, output
    assert [p.read_text() for p in folder.glob('signals-*')] == ['TERM\n', 'TERM\n'], output
    deadline = time.monotonic() + 5
    while tagged_processes(job.tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tagged_processes(job.tag)
    return output


@pytest.mark.slow
def test_stopping_launch_py_gives_every_role_one_sigterm(launcher, tmp_path):
    """Ctrl-C or SIGTERM to launch.py: each role gets SIGTERM once (a trainer saves its epoch;
    a second signal would end it at once) and the job ends, with nothing left."""
    job = launcher(signal_recorder(tmp_path), grace=5)
    wait_ready(job, tmp_path)
    os.kill(launch_py_of(job), signal.SIGTERM)
    output = ends_after_one_sigterm_each(job, tmp_path)
    assert 'launch: error: launcher received SIGTERM; stopping the job' in output


@pytest.mark.slow
def test_a_job_that_slurm_stops_gets_one_sigterm_and_no_restart(slurm_cluster, slurm_jobs,
                                                                 tmp_path):
    """scancel --signal=TERM (what the time limit sends): one SIGTERM to every role, then the
    job ends, reported as stopped; --max-restarts does not start it again."""
    job = slurm_jobs(['--max-restarts', '1'] + signal_recorder(tmp_path))
    wait_ready(job, tmp_path)
    allocation = subprocess.run(['squeue', '-h', '-o', '%i'], env=slurm_cluster.env,
                                capture_output=True, text=True, timeout=30).stdout.split()
    assert len(allocation) == 1
    subprocess.run(['scancel', '--signal=TERM', allocation[0]], env=slurm_cluster.env,
                   check=True, timeout=30)
    output = ends_after_one_sigterm_each(job, tmp_path)
    errors = [line for line in output.splitlines() if line.startswith('launch: ')]
    assert len(errors) == 2 and re.fullmatch(
        r'launch: error: (scheduler|server 0|worker [01]) (was killed by SIGTERM|exited with '
        r'code 143) after a stop signal from srun; stopping the job', errors[0]), output
    assert errors[1] == 'launch: not restarting: the job was stopped'
