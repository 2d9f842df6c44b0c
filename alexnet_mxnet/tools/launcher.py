"""Supervise a parameter-server job: one scheduler, S servers, N workers, however started.

Every launcher hands this module a list of ``Proc``: the job's roles as processes of this
machine (local and ssh launchers), or one resource manager's launcher (``srun``, ``mpirun``)
that starts the whole job as tasks; then each task runs ``alexnet_mxnet.tools.task``, which
prefixes its role's output and reports, in a line of its own, when the role ends and how.
Either way the supervisor forwards output line by line with a ``[role index]`` prefix and
ends the whole job as soon as one role fails: ps-lite itself never notices a dead peer, so
without this the survivors hang forever. (MXNet's bundled ``tools/launch.py`` crashes on
Python >= 3.9 and orphans workers.) ``run_with_restarts`` runs the job again after a failure.
"""
import itertools
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time

from alexnet_mxnet.base.cli import USAGE_EXIT
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.tools.roles import role_label

TIMEOUT_EXIT = 124             # like coreutils `timeout`
# A task wrapper's report: this, then a JSON object, on a line of its own.
TASK_REPORT = b'@launch-task '
# Output a task wrapper already prefixed with its role.
_ROLE_PREFIX = re.compile(rb'\[(?:scheduler|server \d+|worker \d+)\] ')
_HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def task_report(**fields):
    """The line a task wrapper writes to tell the supervisor about its role."""
    return TASK_REPORT + json.dumps(fields, sort_keys=True).encode() + b'\n'


class JobFailed(Exception):
    """The job ended badly; ``code`` is the launcher's exit status, ``str()`` says why;
    ``retry``: whether running the job again may succeed (not after a usage error, a timeout
    or a stop request)."""

    def __init__(self, message, code, retry=True):
        super().__init__(message)
        self.code = code
        self.retry = retry


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
# of every role it starts; end-of-file without the final ``done`` means the launcher is gone,
# however it went (even SIGKILL), and the watchdog then stops those groups: SIGTERM (a trainer
# saves a checkpoint), SIGKILL after the grace period. Groups, not just the launcher's children:
# a worker command behind a wrapper that forks (`timeout`, `sh -c`) is a grandchild, which a
# die-with-parent signal never reaches. (A task wrapper guards its own group, which holds itself:
# ``done`` lets it exit normally.)
WATCHDOG_CODE = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
groups = []
for line in sys.stdin:   # until the launcher is gone
    if line == 'done\\n':
        sys.exit(0)
    groups.append(int(line))

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
        """The job is over: the watchdog exits without stopping anything."""
        try:
            self.popen.stdin.write(b'done\n')
            self.popen.stdin.close()
        except BrokenPipeError:     # it was stopped already (Slurm signals a whole step)
            pass
        self.popen.wait()


class LineSplitter:
    """Cuts a child's output into the lines worth forwarding."""
    # A progress bar redraws its line with \r many times a second: forward such a redraw only
    # if the previous one from this child is this many seconds old (lines ending in \n always).
    REDRAW_EVERY = 2.0

    def __init__(self):
        self.partial = b''
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

    def rest(self):
        """What is left after the last line break (the child ended without one)."""
        rest, self.partial = self.partial, b''
        return [rest] if rest.strip() else []


class _Role:
    """A scheduler, server or worker, and how it ended (``code``: its return code, negative
    for a signal; ``stopped``: it ended because it was told to stop)."""

    def __init__(self, role, index):
        self.role = role
        self.label = role_label(role, index)
        self.code = None
        self.stopped = False


def proc_label(proc):
    """``worker 1``, or the resource manager's launcher: ``srun``, ``mpirun``."""
    return role_label(proc.role, proc.index) if proc.tasks is None else proc.role


class _Child:
    """A process this supervisor started: one role, or (``proc.tasks`` set) a resource
    manager's launcher running the roles ``proc.tasks`` as tasks that report on themselves."""

    def __init__(self, proc, popen):
        self.proc = proc
        self.popen = popen
        self.manager = proc.tasks is not None
        self.label = proc_label(proc)
        self.prefix = b'[' + self.label.encode() + b'] '
        self.roles = ([_Role(role, index) for role, index in proc.tasks] if self.manager
                      else [_Role(proc.role, proc.index)])
        self.splitter = LineSplitter()
        self.open = True
        self.stop_command = None     # a task's way to signal every task gracefully

    def ended(self):
        """Exited, and its output is read to the end (a report may be in it)."""
        return self.popen.poll() is not None and not self.open

    def output(self, lines, job):
        """The lines to forward; task reports go to ``job`` instead."""
        forwarded = []
        for line in lines:
            if self.manager and line.startswith(TASK_REPORT) and self._report(line, job):
                continue
            forwarded.append(line if self.manager and _ROLE_PREFIX.match(line)
                             else self.prefix + line)
        return forwarded

    def _report(self, line, job):
        """Take in a task report; False if ``line`` is not one about a role of this job."""
        try:
            report = json.loads(line[len(TASK_REPORT):])
            label = role_label(report['role'], report['index'])
            role = next(r for r in self.roles if r.label == label)
            if report['event'] == 'start':
                self.stop_command = self.stop_command or report.get('stop')
            else:
                job.role_ended(role, int(report['returncode']), bool(report['stopped']))
        except (ValueError, TypeError, KeyError, StopIteration):
            return False
        return True


class Job:
    """Run ``procs`` to completion; see :func:`run_job`."""

    # A scheduler or server exits 0 only after every worker's final ps-lite barrier, at
    # worker exit; what is left then is each worker's interpreter teardown, which on a
    # loaded machine (AlexNet's arrays, MXNet's engine) can outlast ``grace``.
    TEARDOWN = 30.0

    def __init__(self, procs, *, timeout=None, grace=5.0, out=None, log=None):
        self.procs = procs
        self.timeout = timeout
        self.grace = grace
        self.out = out or sys.stdout.buffer
        self.log = log or (lambda message: print('launch: ' + message, file=sys.stderr, flush=True))
        self.children = []
        self.selector = selectors.DefaultSelector()
        self.watchdog = None
        self.failures = []     # roles that failed, in the order noticed: the first is the cause

    @property
    def roles(self):
        return [role for child in self.children for role in child.roles]

    def start(self):
        self.watchdog = _Watchdog(self.grace)
        for proc in self.procs:
            try:
                popen = subprocess.Popen(proc.argv, env=proc.env, cwd=proc.cwd,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as err:
                raise UsageError('cannot start %s: %s: %s' % (proc_label(proc), proc.argv[0],
                                                              err.strerror)) from None
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
            self._emit(child.output(child.splitter.lines(data), self))

    def _emit(self, lines):
        if lines:
            self.out.write(b''.join(line + b'\n' for line in lines))
            self.out.flush()

    def _close(self, child):
        if child.open:
            self.selector.unregister(child.popen.stdout)
            child.popen.stdout.close()
            child.open = False
            self._emit(child.output(child.splitter.rest(), self))

    def role_ended(self, role, code, stopped=False):
        if role.code is None:
            role.code, role.stopped = code, stopped
            if code and not stopped:
                self.failures.append(role)

    def refresh(self):
        """Note the roles run by this machine's processes that have ended."""
        for child in self.children:
            code = child.popen.poll()
            if code is not None and not child.manager:
                self.role_ended(child.roles[0], code)

    def running(self):
        return [child for child in self.children if child.popen.poll() is None]

    def first_failure(self):
        """Why the job failed, as a ``JobFailed``, or None: the first role that failed, else
        a resource manager's launcher that ended before every worker reported success."""
        self.refresh()
        if self.failures:
            role = self.failures[0]
            return JobFailed('%s %s' % (role.label, describe_exit(role.code)),
                             exit_status(role.code), exit_status(role.code) != USAGE_EXIT)
        for child in self.children:
            if child.manager and child.ended():
                code = child.popen.returncode
                unfinished = [r.label for r in child.roles if r.role == 'worker' and r.code != 0]
                stopped = [r for r in child.roles if r.stopped and r.code]
                if stopped:       # e.g. scancel, or the time limit: not a failure to retry
                    return JobFailed('%s %s after a stop signal from %s' % (
                        stopped[0].label, describe_exit(stopped[0].code), child.label),
                        exit_status(stopped[0].code), retry=False)
                if code:
                    return JobFailed('%s %s' % (child.label, describe_exit(code)),
                                     exit_status(code))
                if unfinished:
                    return JobFailed('%s ended before %s finished' % (child.label, unfinished[0]),
                                     1)
        return None

    def supervise(self):
        """Forward output until every worker succeeded or one role failed; return the status.

        A scheduler or server that exits cleanly while workers still run is a failure too, once
        the workers have had ``TEARDOWN`` seconds (or ``grace``, if longer) to finish (ps-lite
        releases the servers at the workers' final barrier, before the worker processes
        themselves exit).
        """
        deadline = time.monotonic() + self.timeout if self.timeout else None
        workers = [role for role in self.roles if role.role == 'worker']
        others = [role for role in self.roles if role.role != 'worker']
        early_exit = None
        while True:
            self.pump(0.2)
            failure = self.first_failure()
            if failure:
                raise JobFailed('%s; stopping the job' % failure, failure.code, failure.retry)
            if all(role.code == 0 for role in workers):
                return self.finish_servers()
            gone = [role for role in others if role.code is not None]
            if gone and early_exit is None:
                early_exit = time.monotonic()
            if gone and time.monotonic() - early_exit > max(self.grace, self.TEARDOWN):
                raise JobFailed('%s exited while workers were still running; stopping the job'
                                % gone[0].label, 1)
            if deadline and time.monotonic() > deadline:
                raise JobFailed('the job ran longer than --timeout %g s; stopping it'
                                % self.timeout, TIMEOUT_EXIT, retry=False)

    def finish_servers(self):
        """The workers are done: give the scheduler and servers ``grace`` seconds to exit."""
        end = time.monotonic() + self.grace
        while self.running() and time.monotonic() < end:
            self.pump(0.1)
        if self.running():
            self.log('servers still running %g s after the workers finished: stopping them'
                     % self.grace)
            return 0
        while any(child.open for child in self.children) and time.monotonic() < end + 1:
            self.pump(0.1)       # the last reports
        failure = self.first_failure()
        if failure:
            self.log('error: %s after the workers finished' % failure)
        return failure.code if failure else 0

    def stop(self):
        """Stop what still runs: SIGTERM every process group (a resource manager's tasks: the
        signal their report named, so each role gets one SIGTERM and trainers save), SIGKILL
        what is left after ``grace`` seconds; drain the output."""
        for child in self.running():
            if child.stop_command:
                _run_quietly(child.stop_command)
            else:
                _signal_group(child, signal.SIGTERM)
        self._wait(self.grace)
        for child in self.running():
            if child.stop_command:       # srun: SIGTERM ends the step at once
                _signal_group(child, signal.SIGTERM)
        self._wait(2.0)
        for child in self.children:
            _signal_group(child, signal.SIGKILL)
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

    def _wait(self, seconds):
        end = time.monotonic() + seconds
        while self.running() and time.monotonic() < end:
            self.pump(0.1)


def _signal_group(child, signum):
    try:
        os.killpg(child.popen.pid, signum)   # the child and anything it started
    except (ProcessLookupError, PermissionError):
        pass


def _run_quietly(argv):
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.SubprocessError):
        pass


def _raise_on_signal(signum, _frame):
    raise JobFailed('launcher received %s; stopping the job' % signal.Signals(signum).name,
                    128 + signum, retry=False)


class _SignalsRaise:
    """SIGINT/SIGTERM/SIGHUP raise ``JobFailed`` while a job runs (main thread only); during
    the clean-up after, they are ignored, so a second Ctrl-C cannot cut it short (it is
    bounded by the grace periods)."""

    def __init__(self, handler):
        self.handler = handler
        self.active = threading.current_thread() is threading.main_thread()
        self.previous = {}

    def __enter__(self):
        if self.active:
            for signum in _HANDLED:
                self.previous[signum] = signal.signal(signum, self.handler)
        return self

    def cleaning_up(self):
        if self.active:
            for signum in _HANDLED:
                signal.signal(signum, signal.SIG_IGN)

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def run_attempt(procs, *, timeout=None, grace=5.0, out=None, log=None):
    """Run the job once: ``(exit status, JobFailed or None)``; see :func:`run_job`."""
    job = Job(procs, timeout=timeout, grace=grace, out=out, log=log)
    with _SignalsRaise(_raise_on_signal) as handlers:
        try:
            job.start()
            return job.supervise(), None
        except JobFailed as failure:
            job.log('error: %s' % failure)
            return failure.code, failure
        finally:
            handlers.cleaning_up()
            job.stop()


def run_job(procs, *, timeout=None, grace=5.0, out=None, log=None):
    """Start ``procs``, forward their output, and return the job's exit status.

    0 when every worker exits 0. Otherwise the job stops as soon as a role fails (non-zero
    exit, or a scheduler/server exiting while workers still run), within ``grace`` seconds plus
    a poll interval; the status is the failing role's (128+N when killed by signal N), 124
    after ``timeout`` seconds. SIGINT/SIGTERM/SIGHUP stop the job the same way. No child or
    grandchild outlives this call.
    """
    return run_attempt(procs, timeout=timeout, grace=grace, out=out, log=log)[0]


def run_with_restarts(make_procs, max_restarts, *, timeout=None, grace=5.0, out=None, log=None):
    """``run_job(make_procs())``, and after a failure again, up to ``max_restarts`` times
    (each restart logged with its cause); not after a usage error (a restart repeats it), a
    timeout or a stop request. Returns the last attempt's exit status."""
    log = log or (lambda message: print('launch: ' + message, file=sys.stderr, flush=True))
    for attempt in itertools.count():
        status, failure = run_attempt(make_procs(), timeout=timeout, grace=grace, out=out,
                                      log=log)
        if failure is None or attempt >= max_restarts:
            return status
        if not failure.retry:
            log('not restarting: %s' % ('a usage error, which a restart would repeat'
                                        if failure.code == USAGE_EXIT else 'the job was stopped'))
            return status
        log('restart %d of %d after: %s' % (attempt + 1, max_restarts,
                                            str(failure).replace('; stopping the job', '')))
    return None


def run_task(proc, *, grace=5.0, out=None, stop_command=None):
    """Run one role as a task of a resource manager's job (``alexnet_mxnet.tools.task``) and
    return the exit status the manager sees (the role's; 128+N when killed by signal N).

    The role's output goes to ``out`` with its ``[role index]`` prefix, and two task reports
    tell the supervisor that it started (with ``stop_command``, how to send every task a
    graceful stop signal, if there is one) and how it ended. The role runs in this task's
    process group, where Slurm and Open MPI deliver their signals (Slurm to every process of
    the step, Open MPI to the rank's group): each process gets a stop signal once, so a trainer
    saves before it exits, and nothing is forwarded. After a stop signal the role has ``grace``
    seconds, then the group is killed; if this wrapper is killed, the watchdog stops the group.
    """
    out = out or sys.stdout.buffer
    label = role_label(proc.role, proc.index)
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)     # a group of its own: Slurm puts all tasks of a node in one group
    stopping = []

    def note_signal(_signum, _frame):
        stopping.append(time.monotonic())

    def report(event, **fields):
        out.write(task_report(event=event, role=proc.role, index=proc.index, **fields))
        out.flush()
    with _SignalsRaise(note_signal):
        watchdog = _Watchdog(grace)
        watchdog.guard(os.getpgrp())
        try:
            popen = subprocess.Popen(proc.argv, env=proc.env, cwd=proc.cwd,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        except OSError as err:
            _write_lines(out, b'[' + label.encode() + b'] ', [
                ('cannot start %s: %s' % (proc.argv[0], err.strerror)).encode()])
            report('exit', returncode=USAGE_EXIT, stopped=False)
            watchdog.close()
            return USAGE_EXIT
        report('start', pid=popen.pid, stop=stop_command)
        _forward(popen, b'[' + label.encode() + b'] ', out,
                 lambda: stopping and time.monotonic() - stopping[0] > grace)
        report('exit', returncode=popen.returncode, stopped=bool(stopping))
        watchdog.close()
    # Told to stop, the task ends cleanly whatever its role did (the report says that): a
    # failed task would make srun --kill-on-bad-exit signal every other task again, and a
    # second signal ends a trainer before it has saved.
    return 0 if stopping else exit_status(popen.returncode)


def _forward(popen, prefix, out, overdue):
    """Forward ``popen``'s output with ``prefix`` until it ends and ``popen`` has exited (a
    second after the exit at most: a grandchild may hold the pipe open); whenever
    ``overdue()``, kill this process group."""
    splitter = LineSplitter()
    fd = popen.stdout.fileno()
    os.set_blocking(fd, False)
    exited_at, ended = None, False
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not ended:
            if overdue():
                os.killpg(0, signal.SIGKILL)
            if popen.poll() is not None:
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > 1.0:
                    break
            if not selector.select(timeout=0.2):
                continue
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            ended = not data
            _write_lines(out, prefix, splitter.lines(data))
    _write_lines(out, prefix, splitter.rest())
    popen.stdout.close()
    while popen.poll() is None:     # its output ended before it did
        if overdue():
            os.killpg(0, signal.SIGKILL)
        time.sleep(0.1)


def _write_lines(out, prefix, lines):
    if lines:
        out.write(b''.join(prefix + line + b'\n' for line in lines))
        out.flush()
