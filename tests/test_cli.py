"""alexnet_mxnet.base.cli.run_cli: every error class a user can meet ends as one line, never a traceback."""
import errno
import os
import signal
import subprocess
import sys
import uuid

import pytest

from alexnet_mxnet.base.cli import run_cli
from alexnet_mxnet.base.errors import UsageError
from tests.conftest import REPO
from tests.fit_helpers import TAG, tagged_processes


def _run(main, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main)
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def test_usage_error_is_one_line_exit_2(capsys):
    def main(argv):
        raise UsageError('bad flag')
    code, lines = _run(main, capsys)
    assert code == 2 and len(lines) == 1 and lines[0].endswith('error: bad flag')


def test_file_system_error_names_the_path_and_reason(tmp_path, capsys):
    target = str(tmp_path / 'missing' / 'out.csv')

    def main(argv):
        open(target, 'w')
    code, lines = _run(main, capsys)
    assert code == 2 and len(lines) == 1
    assert target in lines[0] and 'No such file or directory' in lines[0]


def test_full_disk_says_so(capsys):
    def main(argv):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/data/x.rec')
    code, lines = _run(main, capsys)
    assert code == 2 and lines == [lines[0]] and 'disk is full' in lines[0]


def test_return_value_is_the_exit_status():
    assert run_cli(lambda argv: 3) == 3
    assert run_cli(lambda argv: None) == 0


def test_ctrl_c_is_one_line_exit_130():
    code = ('import time; from alexnet_mxnet.base.cli import run_cli\n'
            'def main(argv):\n    raise KeyboardInterrupt\n'
            'raise SystemExit(run_cli(main))')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 130
    assert proc.stderr.strip().splitlines() == ['-c: error: interrupted']


def test_small_disk_fills_up(small_disk):
    folder = small_disk(64)
    with pytest.raises(OSError) as err:
        with open(os.path.join(folder, 'big'), 'wb') as handle:
            handle.write(b'x' * (256 * 1024))
    assert err.value.errno == errno.ENOSPC


def test_mode_000_file_is_unreadable_without_root_file_access(tmp_path):
    from tests.conftest import without_root_file_access
    path = str(tmp_path / 'secret.jpg')
    open(path, 'wb').write(b'\xff\xd8')
    os.chmod(path, 0)
    proc = subprocess.run([sys.executable, '-c', 'open(%r, "rb")' % path],
                          preexec_fn=without_root_file_access, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and 'PermissionError' in proc.stderr


STOPPABLE = ('import signal, sys, time\nfrom alexnet_mxnet.base.cli import run_cli\n'
             'def main(argv):\n'
             '    try:\n        print("working", flush=True); time.sleep(60)\n'
             '    finally:\n        print("cleaning up", flush=True); time.sleep(%s)\n'
             'raise SystemExit(run_cli(main))')


def _stoppable(clean_up_seconds):
    """``STOPPABLE`` as a child whose environment is tagged with ``proc.tag``."""
    tag = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, '-c', STOPPABLE % clean_up_seconds], cwd=REPO,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, **{TAG: tag}))
    proc.tag = tag
    return proc


@pytest.mark.parametrize('signum,word', [(signal.SIGINT, 'interrupted'),
                                         (signal.SIGTERM, 'terminated')])
def test_a_signal_runs_the_clean_up_then_ends_in_one_line(signum, word):
    proc = _stoppable('0')
    assert proc.stdout.readline() == 'working\n'
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert out == 'cleaning up\n'
    assert proc.returncode == 128 + signum and err == '-c: error: %s\n' % word
    assert tagged_processes(proc.tag) == []


def test_a_second_signal_during_the_clean_up_ends_at_once():
    proc = _stoppable('60')
    assert proc.stdout.readline() == 'working\n'
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline() == 'cleaning up\n'
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)          # not the 60 s clean-up
    assert proc.returncode == 130 and err == '-c: error: interrupted\n'
    assert tagged_processes(proc.tag) == []


def test_a_second_signal_while_python_shuts_down_is_no_traceback():
    """After the stop's one line, Python still runs exit handlers (thread joins, atexit): a
    second Ctrl-C there met Python's own handler, a KeyboardInterrupt report on stderr."""
    code = ('import atexit, os, signal, time\nfrom alexnet_mxnet.base.cli import run_cli\n'
            'atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(5)))\n'
            'def main(argv):\n    os.kill(os.getpid(), signal.SIGINT); time.sleep(5)\n'
            'raise SystemExit(run_cli(main))')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 130 and proc.stderr == '-c: error: interrupted\n'
