"""Start and supervise a parameter-server job: one scheduler, S servers, N workers.

MXNet's kvstore (ps-lite) reads its role and the scheduler's address from ``DMLC_*``
environment variables; a process whose ``DMLC_ROLE`` is ``server`` or ``scheduler`` runs the
server loop inside ``import mxnet`` and exits when the workers are done. This module builds
those environments, starts every process in its own process group, forwards their output line
by line with a ``[role index]`` prefix, and ends the whole job as soon as one process fails:
ps-lite itself never notices a dead peer, so without this watchdog the survivors hang forever.
(MXNet's bundled ``tools/launch.py`` crashes on Python >= 3.9 and orphans workers.)
"""
import collections
import ipaddress
import os
import re
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

from alexnet_mxnet.base.errors import UsageError

# A server/scheduler process. With DMLC_ROLE=server, MXNet runs the server loop inside
# `import mxnet`; the server then unpickles the workers' optimizer, whose classes (say an
# lr scheduler subclassing mx.lr_scheduler.LRScheduler) cannot load while mxnet is still
# half-imported. So import mxnet as a plain process first, then start the loop.
SERVER_CODE = ('import os; role = os.environ.pop("DMLC_ROLE"); import mxnet; '
               'os.environ["DMLC_ROLE"] = role; '
               'from mxnet.kvstore.kvstore_server import _init_kvstore_server_module; '
               '_init_kvstore_server_module()')
TIMEOUT_EXIT = 124             # like coreutils `timeout`
# Variables forwarded to remote hosts by the ssh launcher (besides DMLC_* and --env ones).
FORWARDED_PREFIXES = ('DMLC_', 'PS_', 'MXNET_', 'OMP_', 'KMP_')

Proc = collections.namedtuple('Proc', 'role index argv env cwd')
Host = collections.namedtuple('Host', 'address port')


def free_port(host='127.0.0.1'):
    """A TCP port nobody listens on right now (for the scheduler)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def parse_env_pairs(pairs):
    """``['A:1', 'B=2']`` -> ``{'A': '1', 'B': '2'}`` (the stock launcher writes ``VAR:value``)."""
    env = {}
    for pair in pairs or ():
        match = re.match(r'^([A-Za-z_][A-Za-z0-9_]*)[:=](.*)$', pair)
        if not match:
            raise UsageError('--env expects VAR:value or VAR=value, got %r' % pair)
        env[match.group(1)] = match.group(2)
    return env


def parse_hostfile(path):
    """Hosts from a file: one ``host``, ``user@host`` or ``host:sshport`` per line, ``#`` comments."""
    if not os.path.isfile(path):
        raise UsageError('hostfile not found: %s' % path)
    hosts = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            address, _, port = line.partition(':')
            if len(line.split()) != 1 or not address or (port and not port.isdigit()):
                raise UsageError('%s line %d: expected host, user@host or host:port, got %r'
                                 % (path, number, line))
            hosts.append(Host(address, int(port) if port else None))
    if not hosts:
        raise UsageError('hostfile %s lists no hosts' % path)
    return hosts


def dmlc_env(role, *, root_uri, port, num_workers, num_servers, node_host=None, interface=None):
    """The variables ps-lite reads to find the scheduler and its own place in the job."""
    env = {'DMLC_ROLE': role, 'DMLC_PS_ROOT_URI': root_uri, 'DMLC_PS_ROOT_PORT': str(port),
           'DMLC_NUM_WORKER': str(num_workers), 'DMLC_NUM_SERVER': str(num_servers)}
    if node_host:
        env['DMLC_NODE_HOST'] = node_host
    if interface:
        env['DMLC_INTERFACE'] = interface
    return env


def _check_counts(num_workers, num_servers, command):
    if num_workers < 1:
        raise UsageError('-n/--num-workers must be at least 1, got %d' % num_workers)
    if num_servers < 1:
        raise UsageError('-s/--num-servers must be at least 1, got %d' % num_servers)
    if not command:
        raise UsageError('no command to run: put the worker command after the options, '
                         'e.g. launch.py -n 2 python train_imagenet.py --kv-store dist_sync')


def _roles(num_workers, num_servers):
    return ([('scheduler', 0)] + [('server', i) for i in range(num_servers)]
            + [('worker', i) for i in range(num_workers)])


def local_job(num_workers, num_servers, command, *, port=None, env=None, server_env=None,
              worker_env=None, python=sys.executable, cwd=None):
    """Every process on this machine, talking over loopback."""
    _check_counts(num_workers, num_servers, command)
    port = port or free_port()
    procs = []
    for role, index in _roles(num_workers, num_servers):
        child = dict(os.environ, PYTHONUNBUFFERED='1')
        child.update(dmlc_env(role, root_uri='127.0.0.1', port=port, num_workers=num_workers,
                              num_servers=num_servers, node_host='127.0.0.1', interface='lo'))
        child.update(env or {})
        child.update((worker_env if role == 'worker' else server_env) or {})
        argv = list(command) if role == 'worker' else [python, '-c', SERVER_CODE]
        procs.append(Proc(role, index, argv, child, cwd))
    return procs


def ssh_argv(host, env, command, workdir):
    """``ssh host 'cd DIR && exec env VAR=... CMD'``.

    ``-tt`` gives the remote command a terminal, so it gets SIGHUP and dies when the local ssh
    is killed; ``BatchMode`` makes a missing key fail at once instead of prompting; the
    keep-alives make ssh exit (status 255, which stops the job) about 30 s after a host
    stops answering, a failure no process could otherwise report.
    """
    assignments = ' '.join(shlex.quote('%s=%s' % item) for item in sorted(env.items()))
    remote = 'cd %s && exec env %s %s' % (shlex.quote(workdir), assignments,
                                          ' '.join(shlex.quote(arg) for arg in command))
    argv = ['ssh', '-tt', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=accept-new',
            '-o', 'ServerAliveInterval=10', '-o', 'ServerAliveCountMax=3']
    if host.port:
        argv += ['-p', str(host.port)]
    return argv + [host.address, remote]


def _ip_literal(address):
    try:
        return str(ipaddress.ip_address(address.rpartition('@')[2]))
    except ValueError:
        return None


def outbound_address(host):
    """This machine's address as seen on the route to ``host`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host.rpartition('@')[2], 9))
            return sock.getsockname()[0]
        except OSError:
            return socket.gethostbyname(socket.gethostname())


def ssh_job(hosts, num_workers, num_servers, command, *, root_uri=None, port=None, env=None,
            server_env=None, worker_env=None, python='python3', workdir=None, interface=None):
    """The scheduler here; servers and workers round-robin over ``hosts`` through ssh.

    Remote processes get the DMLC_* variables, this shell's DMLC_/PS_/MXNET_/OMP_/KMP_ ones
    and ``env``; a host written as an IP address also becomes that process's DMLC_NODE_HOST.
    """
    _check_counts(num_workers, num_servers, command)
    root_uri = root_uri or outbound_address(hosts[0].address)
    port = port or free_port('')
    workdir = workdir or os.getcwd()
    forwarded = {key: value for key, value in os.environ.items()
                 if key.startswith(FORWARDED_PREFIXES) and not key.startswith('DMLC_')}
    counts = {'server': 0, 'worker': 0}
    procs = []
    for role, index in _roles(num_workers, num_servers):
        common = dict(root_uri=root_uri, port=port, num_workers=num_workers,
                      num_servers=num_servers, interface=interface)
        if role == 'scheduler':
            child = dict(os.environ, PYTHONUNBUFFERED='1', **env or {})
            child.update(dmlc_env(role, node_host=root_uri, **common))
            procs.append(Proc(role, index, [sys.executable, '-c', SERVER_CODE], child, None))
            continue
        host = hosts[counts[role] % len(hosts)]
        counts[role] += 1
        remote_env = dict(forwarded, PYTHONUNBUFFERED='1')
        remote_env.update(dmlc_env(role, node_host=_ip_literal(host.address), **common))
        remote_env.update(env or {})
        remote_env.update((worker_env if role == 'worker' else server_env) or {})
        remote_cmd = list(command) if role == 'worker' else [python, '-c', SERVER_CODE]
        procs.append(Proc(role, index, ssh_argv(host, remote_env, remote_cmd, workdir),
                          dict(os.environ), None))
    return procs


class JobFailed(Exception):
    """The job ended badly; ``code`` is the launcher's exit status, ``str()`` says why."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def exit_status(returncode):
    """A child's return code as a shell exit status (killed by signal N -> 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(returncode):
    if returncode < 0:
        try:
            return 'was killed by %s' % signal.Signals(-returncode).name
        except ValueError:
            return 'was killed by signal %d' % -returncode
    return 'exited with code %d' % returncode


# The job's last line of defence: a watchdog process, in a session of its own, holding the
# read end of a pipe that only the launcher can write to. The launcher sends it the process group
# of every role it starts; end-of-file means the launcher is gone, however it went (even SIGKILL),
# and the watchdog then stops those groups: SIGTERM (a trainer saves a checkpoint), SIGKILL after
# the grace period. Groups, not just the launcher's children: a worker command behind a wrapper
# that forks (`timeout`, `sh -c`) is a grandchild, which a die-with-parent signal never reaches.
WATCHDOG_CODE = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
groups = [int(line) for line in sys.stdin]   # until the launcher is gone

def signal_groups(signum):   # send signum to every group; those that still exist
    alive = []
    for group in groups:
        try:
            os.killpg(group, signum)
            alive.append(group)
        except OSError:
            pass
    return alive

alive = signal_groups(signal.SIGTERM)
end = time.monotonic() + float(sys.argv[1])
while alive and time.monotonic() < end:
    time.sleep(0.1)
    alive = signal_groups(0)
signal_groups(signal.SIGKILL)
"""


class _Watchdog:
    """Starts the watchdog process and tells it each process group to guard."""

    def __init__(self, grace):
        try:
            self.popen = subprocess.Popen(
                [sys.executable, '-c', WATCHDOG_CODE, str(grace)], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as err:
            raise UsageError('cannot start the job watchdog: %s' % err.strerror) from None

    def guard(self, pgid):
        self.popen.stdin.write(b'%d\n' % pgid)
        self.popen.stdin.flush()

    def close(self):
        """The job is over: end-of-file, and the watchdog finds nothing left to stop."""
        self.popen.stdin.close()
        self.popen.wait()


class _Child:
    # A progress bar redraws its line with \r many times a second: forward such a redraw only
    # if the previous one from this child is this many seconds old (lines ending in \n always).
    REDRAW_EVERY = 2.0

    def __init__(self, proc, popen):
        self.proc = proc
        self.popen = popen
        self.label = '%s %d' % (proc.role, proc.index) if proc.role != 'scheduler' else 'scheduler'
        self.partial = b''
        self.open = True
        self.last_redraw = float('-inf')

    def lines(self, data, now=None):
        """The complete, non-blank lines in ``data`` worth forwarding."""
        now = time.monotonic() if now is None else now
        pieces = re.split(rb'(\r\n|\r|\n)', self.partial + data)
        self.partial = pieces.pop()
        lines = []
        for text, end in zip(pieces[::2], pieces[1::2]):
            if end == b'\r':
                if now - self.last_redraw < self.REDRAW_EVERY:
                    continue
                self.last_redraw = now
            if text.strip():
                lines.append(text)
        return lines


class Job:
    """Run ``procs`` to completion; see :func:`run_job`."""

    def __init__(self, procs, *, timeout=None, grace=5.0, out=None, log=None):
        self.procs = procs
        self.timeout = timeout
        self.grace = grace
        self.out = out or sys.stdout.buffer
        self.log = log or (lambda message: print('launch: ' + message, file=sys.stderr, flush=True))
        self.children = []
        self.selector = selectors.DefaultSelector()
        self.watchdog = None

    def start(self):
        self.watchdog = _Watchdog(self.grace)
        for proc in self.procs:
            try:
                popen = subprocess.Popen(proc.argv, env=proc.env, cwd=proc.cwd,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as err:
                raise UsageError('cannot start %s %d: %s: %s'
                                 % (proc.role, proc.index, proc.argv[0], err.strerror)) from None
            self.watchdog.guard(popen.pid)   # a new session: its group id is its pid
            child = _Child(proc, popen)
            os.set_blocking(popen.stdout.fileno(), False)
            self.selector.register(popen.stdout, selectors.EVENT_READ, child)
            self.children.append(child)

    def pump(self, wait):
        """Forward whatever output is ready, waiting at most ``wait`` seconds for some."""
        for key, _ in self.selector.select(timeout=wait):
            child = key.data
            try:
                data = os.read(key.fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                self._close(child)
                continue
            self._emit(child, child.lines(data))

    def _emit(self, child, lines):
        if lines:
            prefix = b'[' + child.label.encode() + b'] '
            self.out.write(b''.join(prefix + line + b'\n' for line in lines))
            self.out.flush()

    def _close(self, child):
        if child.open:
            self.selector.unregister(child.popen.stdout)
            child.popen.stdout.close()
            child.open = False
            if child.partial.strip():
                self._emit(child, [child.partial])
            child.partial = b''

    def running(self):
        return [child for child in self.children if child.popen.poll() is None]

    def first_failure(self):
        """The first child that exited non-zero: (reason, exit status), or None."""
        for child in self.children:
            code = child.popen.poll()
            if code:
                return '%s %s' % (child.label, describe_exit(code)), exit_status(code)
        return None

    def supervise(self):
        """Forward output until every worker succeeded or one process failed; return the status.

        A scheduler or server that exits cleanly while workers still run is a failure too, once
        the workers have had ``grace`` seconds to finish (ps-lite releases the servers at the
        workers' final barrier, slightly before the worker processes themselves exit).
        """
        deadline = time.monotonic() + self.timeout if self.timeout else None
        workers = [child for child in self.children if child.proc.role == 'worker']
        others = [child for child in self.children if child.proc.role != 'worker']
        early_exit = None
        while True:
            self.pump(0.2)
            failure = self.first_failure()
            if failure:
                raise JobFailed('%s; stopping the job' % failure[0], failure[1])
            if all(child.popen.poll() == 0 for child in workers):
                return self.finish_servers()
            gone = [child for child in others if child.popen.poll() is not None]
            if gone and early_exit is None:
                early_exit = time.monotonic()
            if gone and time.monotonic() - early_exit > self.grace:
                raise JobFailed('%s exited while workers were still running; stopping the job'
                                % gone[0].label, 1)
            if deadline and time.monotonic() > deadline:
                raise JobFailed('the job ran longer than --timeout %g s; stopping it'
                                % self.timeout, TIMEOUT_EXIT)

    def finish_servers(self):
        """The workers are done: give the scheduler and servers ``grace`` seconds to exit."""
        end = time.monotonic() + self.grace
        while self.running() and time.monotonic() < end:
            self.pump(0.1)
        if self.running():
            self.log('servers still running %g s after the workers finished: stopping them'
                     % self.grace)
            return 0
        failure = self.first_failure()
        if failure:
            self.log('error: %s after the workers finished' % failure[0])
        return failure[1] if failure else 0

    def stop(self):
        """SIGTERM every process group, SIGKILL what is left after ``grace`` seconds, drain output."""
        self._signal_all(signal.SIGTERM)
        end = time.monotonic() + self.grace
        while self.running() and time.monotonic() < end:
            self.pump(0.1)
        self._signal_all(signal.SIGKILL)
        for child in self.children:
            child.popen.wait()
        end = time.monotonic() + 1.0    # output still buffered in the pipes
        while any(child.open for child in self.children) and time.monotonic() < end:
            self.pump(0.1)
        for child in self.children:
            self._close(child)
        self.selector.close()
        if self.watchdog:
            self.watchdog.close()

    def _signal_all(self, signum):
        for child in self.children:
            try:
                os.killpg(child.popen.pid, signum)   # the child and anything it started
            except (ProcessLookupError, PermissionError):
                pass


def _raise_on_signal(signum, _frame):
    raise JobFailed('launcher received %s; stopping the job' % signal.Signals(signum).name,
                    128 + signum)


def run_job(procs, *, timeout=None, grace=5.0, out=None, log=None):
    """Start ``procs``, forward their output, and return the job's exit status.

    0 when every worker exits 0. Otherwise the job stops as soon as a process fails (non-zero
    exit, or a scheduler/server exiting while workers still run), within ``grace`` seconds plus
    a poll interval; the status is the failing child's (128+N when killed by signal N), 124
    after ``timeout`` seconds. SIGINT/SIGTERM/SIGHUP stop the job the same way. No child or
    grandchild outlives this call.
    """
    job = Job(procs, timeout=timeout, grace=grace, out=out, log=log)
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.getsignal(signum) for signum in handled}
    if in_main_thread:
        for signum in handled:
            signal.signal(signum, _raise_on_signal)
    try:
        job.start()
        return job.supervise()
    except JobFailed as failure:
        job.log('error: %s' % failure)
        return failure.code
    finally:
        if in_main_thread:   # a second Ctrl-C must not interrupt the clean-up (bounded by grace)
            for signum in handled:
                signal.signal(signum, signal.SIG_IGN)
        try:
            job.stop()
        finally:
            if in_main_thread:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
