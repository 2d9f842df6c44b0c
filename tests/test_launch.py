"""launch.py / alexnet_mxnet.tools.launcher: job construction, output forwarding, failure handling.

Supervision is exercised with plain Python children (fast); the real MXNet parameter-server
runs are in tests/test_distributed.py. The ssh launcher is checked by its commands only.
"""
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid

import pytest

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.tools.launch_local import local_job
from alexnet_mxnet.tools.launch_ssh import Host, parse_hostfile, ssh_job
from alexnet_mxnet.tools.mpi import mpi_job
from alexnet_mxnet.tools.launcher import (TASK_REPORT, Job, LineSplitter, run_job,
                                          run_with_restarts)
from alexnet_mxnet.tools.roles import SERVER_CODE, Proc, parse_env_pairs
from tests.conftest import REPO
from tests.fit_helpers import TAG, process_alive, tagged_processes

PY = sys.executable


def proc(role, index, code, tmp_path=None, tag=None):
    """A job process running ``code``; ``tag`` marks its environment (``tagged_processes``)."""
    env = dict(os.environ, **({TAG: tag} if tag else {}))
    return Proc(role, index, [PY, '-c', code], env, str(tmp_path) if tmp_path else None)


def run(procs, **kwargs):
    out, log = io.BytesIO(), []
    start = time.monotonic()
    code = run_job(procs, out=out, log=log.append, **kwargs)
    return code, out.getvalue().decode(), log, time.monotonic() - start


# --- building the job ---------------------------------------------------------------------

def test_local_job_gives_each_role_the_ps_lite_environment():
    procs = local_job(2, 1, ['python', 'train.py'], port=9123, env={'A': '1'},
                      worker_env={'W': '2'}, server_env={'S': '3'}, python='/py')
    assert [(p.role, p.index) for p in procs] == [('scheduler', 0), ('server', 0),
                                                   ('worker', 0), ('worker', 1)]
    for p in procs:
        assert p.env['DMLC_ROLE'] == p.role
        assert p.env['DMLC_PS_ROOT_URI'] == p.env['DMLC_NODE_HOST'] == '127.0.0.1'
        assert p.env['DMLC_PS_ROOT_PORT'] == '9123'
        assert (p.env['DMLC_NUM_WORKER'], p.env['DMLC_NUM_SERVER']) == ('2', '1')
        assert p.env['DMLC_INTERFACE'] == 'lo' and p.env['A'] == '1'
        assert ('W' in p.env) == (p.role == 'worker') and ('S' in p.env) == (p.role != 'worker')
    assert procs[0].argv == procs[1].argv == ['/py', '-c', SERVER_CODE]
    assert procs[2].argv == ['python', 'train.py']


@pytest.mark.parametrize('workers,servers,command', [(0, 1, ['x']), (1, 0, ['x']), (1, 1, [])])
def test_bad_job_sizes_are_usage_errors(workers, servers, command):
    with pytest.raises(UsageError):
        local_job(workers, servers, command)


def test_hostfile_parsing(tmp_path):
    path = tmp_path / 'hosts'
    path.write_text('# cluster\n10.0.0.1\n\nalice@node2:2222  # gpu box\nnode3\n')
    assert parse_hostfile(str(path)) == [Host('10.0.0.1', None), Host('alice@node2', 2222),
                                         Host('node3', None)]
    path.write_text('node1 node2\n')
    with pytest.raises(UsageError, match='line 1'):
        parse_hostfile(str(path))
    path.write_text('# nothing\n')
    with pytest.raises(UsageError, match='no hosts'):
        parse_hostfile(str(path))
    with pytest.raises(UsageError, match='not found'):
        parse_hostfile(str(tmp_path / 'missing'))


def test_env_pairs_accept_the_stock_colon_form():
    assert parse_env_pairs(['OMP_NUM_THREADS:3', 'A=b:c']) == {'OMP_NUM_THREADS': '3', 'A': 'b:c'}
    with pytest.raises(UsageError):
        parse_env_pairs(['no-separator'])


def test_ssh_job_runs_scheduler_here_and_the_rest_round_robin_over_hosts(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '4')
    hosts = [Host('10.0.0.1', None), Host('alice@node2', 2222)]
    procs = ssh_job(hosts, 3, 2, ['python', 'train_imagenet.py', '--kv-store', 'dist_sync'],
                    root_uri='10.0.0.9', port=9000, env={'X': 'a b'}, worker_env={'W': '1'},
                    python='/venv/bin/python', workdir='/home/me/alexnet mxnet')
    scheduler = procs[0]
    assert scheduler.argv[0] == sys.executable and 'ssh' not in scheduler.argv
    assert scheduler.env['DMLC_ROLE'] == 'scheduler'
    assert scheduler.env['DMLC_NODE_HOST'] == scheduler.env['DMLC_PS_ROOT_URI'] == '10.0.0.9'

    placed = []
    for p in procs[1:]:
        argv = p.argv
        assert argv[:2] == ['ssh', '-tt'] and 'BatchMode=yes' in argv
        assert 'ServerAliveInterval=10' in argv
        host = argv[-2]
        assert ('-p' in argv) == (host == 'alice@node2')
        if host == 'alice@node2':
            assert argv[argv.index('-p') + 1] == '2222'
        words = shlex.split(argv[-1])           # what the remote shell runs
        assert words[:4] == ['cd', '/home/me/alexnet mxnet', '&&', 'exec']
        assert words[4] == 'env'
        assignments = dict(w.split('=', 1) for w in words[5:] if '=' in w and w[0].isupper())
        command = words[5 + len(assignments):]
        assert assignments['DMLC_ROLE'] == p.role
        assert assignments['DMLC_PS_ROOT_URI'] == '10.0.0.9'
        assert assignments['DMLC_PS_ROOT_PORT'] == '9000'
        assert (assignments['DMLC_NUM_WORKER'], assignments['DMLC_NUM_SERVER']) == ('3', '2')
        assert assignments['X'] == 'a b' and assignments['OMP_NUM_THREADS'] == '4'
        assert assignments.get('DMLC_NODE_HOST') == ('10.0.0.1' if host == '10.0.0.1' else None)
        assert ('W' in assignments) == (p.role == 'worker')
        if p.role == 'worker':
            assert command == ['python', 'train_imagenet.py', '--kv-store', 'dist_sync']
        else:
            assert command == ['/venv/bin/python', '-c', SERVER_CODE]
        placed.append((p.role, p.index, host))
    assert placed == [('server', 0, '10.0.0.1'), ('server', 1, 'alice@node2'),
                      ('worker', 0, '10.0.0.1'), ('worker', 1, 'alice@node2'),
                      ('worker', 2, '10.0.0.1')]


# --- supervising it -----------------------------------------------------------------------

SERVER_UNTIL_WORKERS_END = 'import time; time.sleep(0.5); print("serving")'


def test_success_forwards_prefixed_output_and_returns_zero():
    code, out, log, _ = run([
        proc('scheduler', 0, SERVER_UNTIL_WORKERS_END),
        proc('server', 0, SERVER_UNTIL_WORKERS_END),
        proc('worker', 0, 'import sys; print("hello"); print("partial", end="")'),
        proc('worker', 1, 'import sys; sys.stdout.write("50%\\r100%\\n"); '
                          'print("oops", file=sys.stderr)')])
    assert code == 0, log
    lines = out.splitlines()
    for expected in ('[worker 0] hello', '[worker 0] partial', '[worker 1] 50%',
                     '[worker 1] 100%', '[worker 1] oops', '[scheduler] serving',
                     '[server 0] serving'):
        assert expected in lines
    assert log == []


def test_progress_bar_redraws_are_thinned_out():
    child = LineSplitter()
    assert child.lines(b'10%\r20%\r30', now=0.0) == [b'10%']
    assert child.lines(b'%\r40%\r', now=1.0) == []
    assert child.lines(b'50%\rlog line\n\n', now=2.5) == [b'50%', b'log line']
    assert child.partial == b''


def test_first_failure_stops_everything_in_bounded_time(tmp_path):
    # worker 1 also starts a grandchild: the process-group kill must reach it
    hang = ('import subprocess, sys, time; '
            'p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]); '
            'open("grandchild", "w").write(str(p.pid)); print("started", flush=True); '
            'time.sleep(600)')
    fail = ('import os, sys, time\n'
            'while not os.path.exists("grandchild"): time.sleep(0.05)\n'
            'print("boom", flush=True); open("failing", "w").close(); sys.exit(3)')
    procs = [proc('scheduler', 0, 'import time; time.sleep(600)'),
             proc('server', 0, 'import time; time.sleep(600)'),
             proc('worker', 0, fail, tmp_path),
             proc('worker', 1, hang, tmp_path)]
    code, out, log, _ = run(procs, grace=2)
    assert code == 3
    assert log == ['error: worker 0 exited with code 3; stopping the job']
    assert '[worker 0] boom' in out and '[worker 1] started' in out
    assert time.time() - os.path.getmtime(str(tmp_path / 'failing')) < 2 + 3
    grandchild = int((tmp_path / 'grandchild').read_text())
    assert not process_alive(grandchild)


def test_killed_child_reports_the_signal():
    tag = uuid.uuid4().hex
    code, _, log, _ = run([proc('scheduler', 0, 'import time; time.sleep(600)', tag=tag),
                           proc('worker', 0, 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)',
                                tag=tag)],
                          grace=1)
    assert code == 128 + signal.SIGKILL
    assert log == ['error: worker 0 was killed by SIGKILL; stopping the job']
    assert tagged_processes(tag) == []             # the scheduler was stopped too


def test_server_exiting_while_workers_run_is_a_failure(monkeypatch):
    monkeypatch.setattr(Job, 'TEARDOWN', 2.0)
    code, _, log, seconds = run([proc('scheduler', 0, 'import time; time.sleep(600)'),
                                 proc('server', 0, 'pass'),
                                 proc('worker', 0, 'import time; time.sleep(600)')], grace=1)
    assert code == 1
    assert log == ['error: server 0 exited while workers were still running; stopping the job']
    assert seconds < 10


def test_timeout_stops_a_hung_job():
    code, _, log, seconds = run([proc('worker', 0, 'import time; time.sleep(600)')],
                                timeout=1, grace=1)
    assert code == 124 and 'timeout' in log[0]
    assert seconds < 6


def test_servers_that_outlive_the_workers_are_stopped():
    code, _, log, seconds = run([proc('server', 0, 'import time; time.sleep(600)'),
                                 proc('worker', 0, 'pass')], grace=1)
    assert code == 0 and 'stopping them' in log[0]
    assert seconds < 6


# --- restarts -----------------------------------------------------------------------------

def flaky_job(tmp_path, failures, code=3):
    """A job whose worker fails (exit ``code``) in its first ``failures`` runs; the number of
    runs is counted in the file ``runs``."""
    worker = ('import os, sys\n'
              'runs = len(open("runs").read()) if os.path.exists("runs") else 0\n'
              'open("runs", "a").write("x")\n'
              'print("run", runs + 1, flush=True)\n'
              'sys.exit(%d if runs < %d else 0)\n' % (code, failures))
    return lambda: [proc('worker', 0, worker, tmp_path)]


def restarted(tmp_path, failures, max_restarts, code=3):
    out, log = io.BytesIO(), []
    status = run_with_restarts(flaky_job(tmp_path, failures, code), max_restarts, out=out,
                               log=log.append, grace=1)
    return status, len((tmp_path / 'runs').read_text()), log, out.getvalue().decode()


def test_a_failed_job_is_restarted_with_its_cause_logged(tmp_path):
    status, runs, log, out = restarted(tmp_path, failures=1, max_restarts=2)
    assert (status, runs) == (0, 2)
    assert log == ['error: worker 0 exited with code 3; stopping the job',
                   'restart 1 of 2 after: worker 0 exited with code 3']
    assert '[worker 0] run 2' in out.splitlines()


def test_restarts_are_bounded(tmp_path):
    status, runs, log, _ = restarted(tmp_path, failures=5, max_restarts=2)
    assert (status, runs) == (3, 3)
    assert [line for line in log if line.startswith('restart')] == [
        'restart 1 of 2 after: worker 0 exited with code 3',
        'restart 2 of 2 after: worker 0 exited with code 3']


def test_a_usage_error_is_not_restarted(tmp_path):
    status, runs, log, _ = restarted(tmp_path, failures=5, max_restarts=2, code=2)
    assert (status, runs) == (2, 1)
    assert log[-1] == 'not restarting: a usage error, which a restart would repeat'


# --- the task wrapper that srun and mpirun run ---------------------------------------------

def task(args, rank_env, **kwargs):
    """``python -m alexnet_mxnet.tools.task`` with the rank in ``rank_env``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(('SLURM_', 'OMPI_', 'PMI'))}
    env.update(rank_env)
    return subprocess.run([PY, '-m', 'alexnet_mxnet.tools.task', '--root-uri', '10.1.2.3',
                           '--port', '9100'] + args, cwd=REPO, env=env, capture_output=True,
                          timeout=60, **kwargs)


def reports(stdout):
    return [json.loads(line[len(TASK_REPORT):]) for line in stdout.splitlines()
            if line.startswith(TASK_REPORT)]


def test_a_task_finds_its_role_from_its_rank_and_reports_how_it_ended():
    # rank 2 of 1 scheduler + 1 server + 2 workers: worker 0 (srun numbers tasks from 0)
    code = ('import os, sys; print(" ".join(os.environ[v] for v in ("DMLC_ROLE", '
            '"DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_WORKER", "DMLC_NUM_SERVER", '
            '"DMLC_INTERFACE", "DMLC_NODE_HOST", "A", "W"))); print("no newline", end=""); '
            'sys.exit(5)')
    done = task(['--launcher', 'slurm', '--workers', '2', '--servers', '1', '--interface', 'lo',
                 '--env', 'A=1', '--env-worker', 'W=2', '--env-server', 'W=3', '--',
                 PY, '-c', code], {'SLURM_PROCID': '2', 'SLURM_JOB_ID': '7',
                                   'SLURM_STEP_ID': '0'})
    assert done.returncode == 5, done.stderr
    lines = done.stdout.splitlines()
    assert b'[worker 0] worker 10.1.2.3 9100 2 1 lo 127.0.0.1 1 2' in lines
    assert b'[worker 0] no newline' in lines
    start, end = reports(done.stdout)
    assert start['event'] == 'start' and (start['role'], start['index']) == ('worker', 0)
    assert start['stop'] == ['scancel', '--signal=TERM', '7.0']
    assert end == {'event': 'exit', 'role': 'worker', 'index': 0, 'returncode': 5,
                   'stopped': False}


def test_an_mpmd_task_takes_its_index_from_the_mpi_rank():
    done = task(['--launcher', 'mpi', '--workers', '3', '--servers', '2', '--role', 'worker',
                 '--', PY, '-c', 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'],
                {'OMPI_COMM_WORLD_RANK': '5'})
    assert done.returncode == 128 + signal.SIGKILL
    start, end = reports(done.stdout)
    assert (end['role'], end['index'], end['returncode']) == ('worker', 2, -signal.SIGKILL)
    assert start['stop'] is None


@pytest.mark.parametrize('args,rank_env,message', [
    (['--launcher', 'mpi'], {}, 'no task rank: OMPI_COMM_WORLD_RANK or PMI_RANK or PMIX_RANK'),
    (['--launcher', 'mpi', '--role', 'server'], {'PMI_RANK': '3'},
     'task rank 3 has no server in a job of 1 scheduler, 1 servers and 2 workers'),
    (['--launcher', 'slurm'], {'SLURM_PROCID': '4'}, 'task rank 4 has no place'),
])
def test_a_misplaced_task_is_a_one_line_error(args, rank_env, message):
    done = task(args + ['--workers', '2', '--servers', '1', '--', PY, '-c', 'pass'], rank_env,
                text=True)
    assert done.returncode == 2
    assert done.stderr.count('\n') == 1 and message in done.stderr, done.stderr


def test_a_stopped_task_ends_cleanly_and_reports_what_its_role_did():
    """Told to stop, a task exits 0 (so srun --kill-on-bad-exit does not signal the others a
    second time); its report has the role's status."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(('SLURM_', 'OMPI_', 'PMI'))}
    env['SLURM_PROCID'] = '2'
    wrapper = subprocess.Popen(
        [PY, '-m', 'alexnet_mxnet.tools.task', '--launcher', 'slurm', '--workers', '1',
         '--servers', '1', '--root-uri', '127.0.0.1', '--port', '9100', '--', PY, '-c',
         'print("ready", flush=True); import time; time.sleep(600)'], env=env,
        stdout=subprocess.PIPE)
    assert wrapper.stdout.readline().startswith(TASK_REPORT)
    assert wrapper.stdout.readline() == b'[worker 0] ready\n'
    os.killpg(wrapper.pid, signal.SIGTERM)
    out, _ = wrapper.communicate(timeout=30)
    assert wrapper.returncode == 0
    assert reports(out)[-1] == {'event': 'exit', 'role': 'worker', 'index': 0,
                                'returncode': -signal.SIGTERM, 'stopped': True}


def test_a_stopped_task_gives_its_role_the_grace_period_then_kills_its_group(tmp_path):
    """Slurm and Open MPI signal every process of a task; the wrapper forwards nothing (the role
    gets one SIGTERM, and may save), waits --grace for it, then kills its process group."""
    stubborn = ('import os, signal, subprocess, sys, time\n'
                'signal.signal(signal.SIGTERM, lambda *a: print("saving", flush=True))\n'
                'child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])\n'
                'open("pids", "w").write("%d %d" % (os.getpid(), child.pid))\n'
                'time.sleep(600)\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(('SLURM_', 'OMPI_', 'PMI'))}
    env['SLURM_PROCID'] = '2'
    wrapper = subprocess.Popen(
        [PY, '-m', 'alexnet_mxnet.tools.task', '--launcher', 'slurm', '--workers', '1',
         '--servers', '1', '--root-uri', '127.0.0.1', '--port', '9100', '--grace', '1', '--',
         PY, '-c', stubborn], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (tmp_path / 'pids').exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    role, grandchild = map(int, (tmp_path / 'pids').read_text().split())
    os.killpg(wrapper.pid, signal.SIGTERM)     # the task's group, as the managers signal it
    stopped = time.monotonic()
    out, _ = wrapper.communicate(timeout=30)
    assert 1 <= time.monotonic() - stopped < 5
    assert wrapper.returncode == -signal.SIGKILL
    assert out.splitlines().count(b'[worker 0] saving') == 1
    deadline = time.monotonic() + 5
    while (process_alive(role) or process_alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(role) and not process_alive(grandchild)


# --- the command line -----------------------------------------------------------------------

def launch(*args, **kwargs):
    return subprocess.run([PY, os.path.join(REPO, 'launch.py')] + list(args), cwd=REPO,
                          capture_output=True, text=True, timeout=60, **kwargs)


@pytest.mark.parametrize('args,message', [
    (['-n', '2'], 'no command to run'),
    (['python', 'x.py'], 'required: -n/--num-workers'),
    (['-n', 'two', 'python', 'x.py'], "must be a whole number >= 1, got 'two'"),
    (['-n', '2', '--launcher', 'ssh', 'python', 'x.py'], 'needs -H HOSTFILE'),
    (['-n', '2', '--env', 'oops', 'python', 'x.py'], '--env expects'),
    (['-n', '2', '-H', 'no-such-hostfile', 'python', 'x.py'], 'hostfile not found'),
    (['-n', '2', '--grace', '-1', 'python', 'x.py'], 'argument --grace: must be a number >= 0'),
    (['-n', '1', 'no-such-program-xyz'], 'cannot start worker 0'),
    (['-n', '2', '--max-restarts', '-1', 'python', 'x.py'],
     'argument --max-restarts: must be a whole number >= 0'),
    (['-n', '2', '--launcher', 'slurm', 'python', 'x.py'], 'runs inside a Slurm allocation'),
    (['-n', '2', '--launcher', 'slurm', '-H', 'hosts', 'python', 'x.py'],
     '-H is not used by --launcher slurm'),
    (['-n', '2', '--interface', 'eth0', '--launcher-args=-x', 'python', 'x.py'],
     '--interface, --launcher-args are not used by --launcher local'),
    (['-n', '2', '--launcher', 'mpi', '-H', 'no-such-hostfile', 'python', 'x.py'],
     'hostfile not found'),
    (['-n', '2', '--launcher', 'mpi', '--interface', 'no-such-if0', 'python', 'x.py'],
     "network interface 'no-such-if0' has no IPv4 address here"),
])
def test_cli_usage_errors_are_one_line(args, message):
    outside_slurm = {k: v for k, v in os.environ.items() if not k.startswith('SLURM_')}
    result = launch(*args, env=outside_slurm)
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1 and message in result.stderr, result.stderr


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_launcher_stops_the_job(tmp_path, signum):
    """The launcher's children must not outlive it, even when it is killed outright."""
    sleeper = 'import os, time; open("pid%d" % os.getpid(), "w").close(); time.sleep(600)\n'
    (tmp_path / 'mxnet.py').write_text(sleeper)   # what scheduler and server `import mxnet` here
    launcher = subprocess.Popen(
        [PY, os.path.join(REPO, 'launch.py'), '-n', '2', '-s', '1',
         '--env-server', 'PYTHONPATH:%s' % tmp_path, PY, '-c', sleeper],
        cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob('pid*'))) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    children = [int(p.name[3:]) for p in tmp_path.glob('pid*')]
    assert len(children) == 4     # scheduler, server, 2 workers
    launcher.send_signal(signum)
    _, err = launcher.communicate(timeout=20)
    if signum == signal.SIGTERM:
        assert launcher.returncode == 128 + signal.SIGTERM
        assert b'received SIGTERM' in err
    deadline = time.monotonic() + 5
    while any(process_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(process_alive(pid) for pid in children)


@pytest.mark.parametrize('wrapper', [['timeout', '600'], ['bash', '-c', '"$0" "$@"'],
                                     ['sh', '-c', '"$0" "$@"; echo done']])
def test_killing_the_launcher_stops_workers_behind_a_wrapper(tmp_path, wrapper):
    """SIGKILL to the launcher: a trainer started through a wrapper that forks (its grandchild)
    must not be left running, hung in ps-lite forever."""
    sleeper = 'import os, time; open("pid%d" % os.getpid(), "w").close(); time.sleep(600)\n'
    (tmp_path / 'mxnet.py').write_text(sleeper)
    launcher = subprocess.Popen(
        [PY, os.path.join(REPO, 'launch.py'), '-n', '2', '-s', '1',
         '--env-server', 'PYTHONPATH:%s' % tmp_path] + wrapper + [PY, '-c', sleeper],
        cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob('pid*'))) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    job = [int(p.name[3:]) for p in tmp_path.glob('pid*')]
    assert len(job) == 4
    launcher.kill()
    launcher.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in job) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in job if process_alive(pid)]


def test_mpi_in_a_slurm_allocation_of_several_nodes_needs_a_hostfile(monkeypatch, tmp_path):
    """Open MPI would put the ranks on the allocation's nodes while the scheduler's address
    said this machine: a hang, refused before anything starts."""
    monkeypatch.setenv('SLURM_JOB_NUM_NODES', '4')
    with pytest.raises(UsageError, match=r'^--launcher mpi in a Slurm allocation of 4 nodes '
                                         r'needs -H HOSTFILE \(its first host runs the '
                                         r'scheduler\); or use --launcher slurm$'):
        mpi_job(2, 1, ['python', 'train_imagenet.py'])
    hostfile = tmp_path / 'hosts'
    hostfile.write_text('node1 slots=2\nnode2 slots=2\n')
    argv = mpi_job(2, 1, ['python', 'train_imagenet.py'], hostfile=str(hostfile),
                   root_uri='10.0.0.1')[0].argv
    assert argv[:5] == ['mpirun', '--map-by', 'node', '--hostfile', str(hostfile)]
