"""A real one-node Slurm for the tests: munged, slurmctld and slurmd, run from a temporary
folder with a generated slurm.conf (Debian's slurm-wlm and munge, which .ci/os-packages.sh
installs), and what Open MPI needs. ``slurm_cluster`` is a session fixture; a test module
that uses it imports it. Stopped, with every job, when the session ends.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest

from tests.conftest import REPO
from tests.fit_helpers import TAG, tagged_processes

SLURM_PROGRAMS = ('munged', 'mungekey', 'slurmctld', 'slurmd', 'srun', 'salloc', 'sinfo',
                  'scontrol', 'scancel')
# Four tasks (scheduler, server, 2 workers) must fit on a 2-core machine: the node claims 16
# CPUs (config_overrides keeps slurmd from refusing that) and every CPU may hold 4 jobs.
SLURM_CONF = """\
ClusterName=alexnet-ci
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs=16 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def missing_slurm():
    """Why a one-node Slurm cannot run here, or None."""
    absent = [name for name in SLURM_PROGRAMS if not shutil.which(name)
              and not os.path.exists(os.path.join('/usr/sbin', name))]
    if absent:
        return ('Slurm is not installed (missing %s; .ci/os-packages.sh installs slurm-wlm and '
                'munge)' % ', '.join(absent))
    if os.geteuid() != 0:
        return 'a one-node Slurm needs root here (slurmd runs jobs as any user)'
    return None


def missing_mpi():
    """Why Open MPI's mpirun cannot run here, or None."""
    if not shutil.which('mpirun'):
        return 'Open MPI is not installed (.ci/os-packages.sh installs openmpi-bin)'
    version = subprocess.run(['mpirun', '--version'], capture_output=True, text=True, timeout=30)
    if 'Open MPI' not in version.stdout:
        return 'mpirun here is not Open MPI: %s' % version.stdout.strip()[:80]
    return None


def mpi_env(env=None):
    """Open MPI's consent to run as root, where the tests run as root."""
    return dict(env or os.environ, OMPI_ALLOW_RUN_AS_ROOT='1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM='1')


class OneNodeSlurm:
    """munged + slurmctld + slurmd in the foreground, as children of the test process."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix='slurm-')
        os.chmod(self.folder, 0o755)          # munged runs as user munge
        self.host = socket.gethostname().split('.')[0]
        self.conf = os.path.join(self.folder, 'slurm.conf')
        self.daemons = []

    @property
    def env(self):
        return dict(os.environ, SLURM_CONF=self.conf)

    def start(self, timeout=30):
        for name in ('state', 'spool', 'log'):
            os.mkdir(os.path.join(self.folder, name))
        munge = os.path.join(self.folder, 'munge')
        os.mkdir(munge, 0o711)
        key = os.path.join(munge, 'munge.key')
        subprocess.run(['mungekey', '--create', '--keyfile', key], check=True, timeout=30,
                       capture_output=True)
        subprocess.run(['chown', '-R', 'munge:munge', munge], check=True, timeout=30)
        with open(self.conf, 'w') as handle:
            handle.write(SLURM_CONF.format(host=self.host, folder=self.folder,
                                           ctld_port=_free_port(), slurmd_port=_free_port()))
        self._daemon('munged', ['runuser', '-u', 'munge', '--', 'munged', '--foreground',
                      '--socket=%s/munge.socket' % munge, '--key-file=%s' % key,
                      '--pid-file=%s/munged.pid' % munge, '--log-file=%s/munged.log' % munge,
                      '--seed-file=%s/munged.seed' % munge])
        self._wait(lambda: os.path.exists(os.path.join(munge, 'munge.socket')), timeout,
                   'munged')
        self._daemon('slurmctld', ['slurmctld', '-D'])
        self._daemon('slurmd', ['slurmd', '-D'])
        self._wait(self._node_idle, timeout, 'the Slurm node to become idle')
        return self

    def _daemon(self, name, argv):
        log = open(os.path.join(self.folder, 'log', name + '.out'), 'w')
        self.daemons.append(subprocess.Popen(argv, env=self.env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True))
        log.close()

    def _node_idle(self):
        state = subprocess.run(['sinfo', '-h', '-o', '%T'], env=self.env, capture_output=True,
                               text=True, timeout=30)
        return state.stdout.strip() == 'idle'

    def _wait(self, ready, timeout, what):
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [d.args for d in self.daemons if d.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError('one-node Slurm: no %s after %d s (%s); logs in %s'
                                   % (what, timeout, 'exited: %s' % dead if dead else 'timeout',
                                      self.folder))
            time.sleep(0.2)

    def cancel_all(self, timeout=30):
        """Cancel every job and wait until Slurm lists none; returns what ``squeue`` listed."""
        listed = self._jobs()
        if listed:
            subprocess.run(['scancel', '--full', '--user', 'root'], env=self.env,
                           capture_output=True, timeout=30)
            deadline = time.monotonic() + timeout
            while self._jobs():
                if time.monotonic() > deadline:
                    raise RuntimeError('one-node Slurm: jobs still listed %d s after scancel'
                                       % timeout)
                time.sleep(0.2)
        return listed

    def _jobs(self):
        return subprocess.run(['squeue', '-h'], env=self.env, capture_output=True, text=True,
                              timeout=30).stdout.strip()

    def stop(self):
        """Cancel every job, then stop the daemons (SIGTERM, SIGKILL after 10 s)."""
        if len(self.daemons) > 1 and self.daemons[1].poll() is None:    # slurmctld
            self.cancel_all()
        for daemon in reversed(self.daemons):
            _signal_group(daemon, signal.SIGTERM)     # munged runs under runuser
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(daemon, signal.SIGKILL)
                daemon.wait()
        self.daemons = []
        shutil.rmtree(self.folder, ignore_errors=True)


def _signal_group(popen, signum):
    try:
        os.killpg(popen.pid, signum)
    except ProcessLookupError:
        pass


@pytest.fixture(scope='session')
def slurm_cluster():
    """A running one-node Slurm (``.env`` holds SLURM_CONF); skips when it cannot run here."""
    reason = missing_slurm()
    if reason:
        pytest.skip(reason)
    cluster = OneNodeSlurm().start()
    yield cluster
    cluster.stop()


class Launched:
    """``launch.py ARGS`` (behind ``wrapper``, e.g. ``salloc -n 4``) as a child process whose
    output lines (stdout and stderr) are kept with the time each arrived; every process of the
    job carries ``TAG=self.tag``, so a test can find any survivor."""

    def __init__(self, args, wrapper=(), env=None):
        self.tag = uuid.uuid4().hex
        env = dict(env or os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1',
                   **{TAG: self.tag})
        self.proc = subprocess.Popen(
            list(wrapper) + [sys.executable, os.path.join(REPO, 'launch.py')] + list(args),
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip('\n')))

    @property
    def output(self):
        return '\n'.join(line for _, line in self.lines)

    def finish(self, timeout):
        """``(exit status, output, when it exited)``; kills the job if it overruns."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError('launch.py still running after %d s:\n%s'
                                 % (timeout, self.output))
        ended = time.monotonic()
        self.reader.join(timeout=10)
        return self.proc.returncode, self.output, ended

    def kill(self):
        """SIGKILL launch.py and every process of the job; True if launch.py was still running
        (the test failed before the job ended)."""
        running = self.proc.poll() is None
        for pid in tagged_processes(self.tag) + ([self.proc.pid] if running else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()
        return running


class Jobs:
    """A test's launch.py jobs, all with the same launcher flags, wrapper and environment;
    ``close()`` kills those still running so that a failed test cannot disturb the next."""

    def __init__(self, flags, wrapper=(), env=None):
        self.flags, self.wrapper, self.env = list(flags), wrapper, env
        self.started = []

    def __call__(self, args, grace=5):
        self.started.append(Launched(self.flags + ['--grace', str(grace)] + list(args),
                                     wrapper=self.wrapper, env=self.env))
        return self.started[-1]

    def close(self):
        """True if some job was still running."""
        return any([job.kill() for job in self.started])
