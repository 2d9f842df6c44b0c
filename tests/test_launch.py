"""launch.py / alexnet_mxnet.tools.launcher: job construction, output forwarding, failure handling.

Supervision is exercised with plain Python children (fast); the real MXNet parameter-server
runs are in tests/test_distributed.py. The ssh launcher is checked by its commands only.
"""
import io
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.tools.launcher import (SERVER_CODE, Host, Proc, _Child, local_job, parse_env_pairs,
                             parse_hostfile, run_job, ssh_job)
from tests.conftest import REPO

PY = sys.executable


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie is dead but not yet reaped by its parent
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def proc(role, index, code, tmp_path=None):
    return Proc(role, index, [PY, '-c', code], dict(os.environ), str(tmp_path) if tmp_path else None)


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
    child = _Child(Proc('worker', 0, [], {}, None), None)
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
    assert not alive(grandchild)


def test_killed_child_reports_the_signal():
    code, _, log, _ = run([proc('scheduler', 0, 'import time; time.sleep(600)'),
                           proc('worker', 0, 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)')],
                          grace=1)
    assert code == 128 + signal.SIGKILL
    assert log == ['error: worker 0 was killed by SIGKILL; stopping the job']


def test_server_exiting_while_workers_run_is_a_failure():
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


# --- the command line ---------------------------------------------------------------------

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
])
def test_cli_usage_errors_are_one_line(args, message):
    result = launch(*args)
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
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in children)


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
    while any(alive(pid) for pid in job) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in job if alive(pid)]
