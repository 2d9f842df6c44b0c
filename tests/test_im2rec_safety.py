"""alexnet_mxnet.data.im2rec never hangs, never orphans a worker, never loses or mixes up output: real
processes in every state, real signals, two conversions at once."""
import glob
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import mxnet as mx
import pytest

from tests.conftest import REPO
from tests.fit_helpers import TAG, process_alive, process_state, tagged_processes
from alexnet_mxnet.data.im2rec import convert
from alexnet_mxnet.data.sources import read_class_folders

pytestmark = pytest.mark.slow
RESIZE = 48


@pytest.fixture(scope='module')
def small_source(datasets_dir, tmp_path_factory):
    """24 real photos of two classes (links), for the process-state tests."""
    root = tmp_path_factory.mktemp('small') / 'src'
    for name in ('ants', 'bees'):
        folder = os.path.join(datasets_dir, 'hymenoptera', 'train', name)
        os.makedirs(str(root / name))
        for photo in sorted(os.listdir(folder))[:12]:
            os.symlink(os.path.join(folder, photo), str(root / name / photo))
    return root


@pytest.fixture(scope='module')
def reference(small_source, tmp_path_factory):
    """The .rec bytes of the small source converted by one worker."""
    result = convert(str(small_source), str(tmp_path_factory.mktemp('ref') / 'r'), val_ratio=0.25,
                     resize=RESIZE, num_workers=1, progress=False)
    return {split: open(path, 'rb').read() for split, path in result.records.items()}


@pytest.fixture(scope='module')
def big_source(datasets_dir, tmp_path_factory):
    """All 397 hymenoptera photos (links) in two classes: a conversion of a few seconds."""
    root = tmp_path_factory.mktemp('big') / 'src'
    for name in ('ants', 'bees'):
        os.makedirs(str(root / name))
        for split in ('train', 'val'):
            folder = os.path.join(datasets_dir, 'hymenoptera', split, name)
            for photo in os.listdir(folder):
                os.symlink(os.path.join(folder, photo), str(root / name / (split + photo)))
    return root


def _count(source):
    return sum(len(os.listdir(str(source / name))) for name in ('ants', 'bees'))


def _records(prefix):
    return {split: open('%s_%s.rec' % (prefix, split), 'rb').read() for split in ('train', 'val')}


def test_records_are_identical_with_1_2_and_3_workers(small_source, reference, tmp_path):
    for workers in (2, 3):
        convert(str(small_source), str(tmp_path / str(workers)), val_ratio=0.25, resize=RESIZE,
                num_workers=workers, progress=False)
        assert _records(str(tmp_path / str(workers))) == reference


def _run_script(tmp_path, code, timeout=60):
    """Run ``code`` as a user's plain script (no main guard) in its own process group; on a
    timeout the whole group is killed and the test fails."""
    script = tmp_path / 'user_script.py'
    script.write_text(textwrap.dedent(code))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=dict(os.environ, PYTHONPATH=REPO))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail('the conversion hung (no result in %d s)' % timeout)
    assert proc.returncode == 0, err
    return out


_THREADS_RUNNING = '''
    import cv2, numpy as np, mxnet as mx
    mx.nd.dot(mx.nd.ones((256, 256)), mx.nd.ones((256, 256))).wait_to_read()  # MXNet's threads
    cv2.setNumThreads(2)
    cv2.resize(np.zeros((2000, 2000, 3), np.uint8), (1000, 1000))           # OpenCV's pool
    from alexnet_mxnet.data.im2rec import convert
'''


def test_no_deadlock_after_opencv_and_mxnet_threads_ran_in_a_script_without_main_guard(
        small_source, reference, tmp_path):
    """The deadlock: workers forked from a process whose OpenCV threads held a lock at fork
    time blocked forever. Here from a plain script, the case ``spawn`` would break."""
    _run_script(tmp_path, _THREADS_RUNNING + '''
    convert(%r, 'out/p', val_ratio=0.25, resize=%d, num_workers=2, progress=False)
    ''' % (str(small_source), RESIZE))
    assert _records(str(tmp_path / 'out' / 'p')) == reference


def test_forked_child_and_daemon_process(small_source, reference, tmp_path):
    _run_script(tmp_path, _THREADS_RUNNING + '''
    import multiprocessing
    def job(prefix):
        convert(%r, prefix, val_ratio=0.25, resize=%d, num_workers=2, progress=False)
    for name, daemon in (('child', False), ('daemon', True)):
        child = multiprocessing.get_context('fork').Process(target=job, args=('out/' + name,),
                                                              daemon=daemon)
        child.start()
        child.join(50)
        assert child.exitcode == 0, (name, child.exitcode)
    ''' % (str(small_source), RESIZE))
    for name in ('child', 'daemon'):
        assert _records(str(tmp_path / 'out' / name)) == reference


def test_workers_import_no_mxnet(small_source):
    """The workers are fresh interpreters that never load MXNet (about 280 MB each when they
    were forks of an MXNet process)."""
    from alexnet_mxnet.data.encoding import EncodeSettings, EncoderPool, make_record
    items = read_class_folders(str(small_source)).splits['all'][:4]
    settings = EncodeSettings(RESIZE, False, 95, False)
    with EncoderPool(settings, 2) as pool:
        assert list(pool.map(items)) == [make_record(item.index, item.label, item.path, None,
                                                     settings) for item in items]
        for worker in pool.workers:
            with open('/proc/%d/maps' % worker.proc.pid) as handle:
                maps = handle.read()
            assert 'libopencv' in maps or 'cv2' in maps
            assert 'mxnet' not in maps


# --- signals, kills and a second conversion ------------------------------------------------

def _children(pid):
    return [int(entry) for entry in os.listdir('/proc') if entry.isdigit()
            and (process_state(int(entry)) or [None, None])[1] == str(pid)
            and process_alive(int(entry))]


_STARTED = []


@pytest.fixture(autouse=True)
def _no_process_left_behind():
    """Whatever a test started (and its workers, in the same process group) ends with it."""
    yield
    while _STARTED:
        try:
            os.killpg(_STARTED.pop().pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start(source, prefix, *extra):
    """``im2rec.py`` with 2 workers; its environment is tagged with ``proc.tag``, so every
    descendant can be found (``_left_behind``)."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    tag = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'im2rec.py'), '--no-progress', str(source),
                             prefix, '--workers', '2'] + list(extra), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=dict(os.environ, **{TAG: tag}))
    proc.tag = tag
    _STARTED.append(proc)
    return proc


def _partials(folder):
    return [path for pattern in ('*partial*', '.*partial*')
            for path in glob.glob(os.path.join(folder, pattern))]


def _mid_run(proc, folder, timeout=60):
    """The converter's worker PIDs, once it is writing records."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        workers = _children(proc.pid)
        written = [path for path in _partials(folder) if '.rec' in path and os.path.getsize(path)]
        if len(workers) == 2 and written:
            return workers
        time.sleep(0.02)
    pytest.fail('the conversion did not start writing within %d s' % timeout)


def _left_behind(proc, seconds=5):
    """The PIDs of ``proc``'s descendants still alive ``seconds`` after it ended (workers die
    with it through PR_SET_PDEATHSIG, a moment later). Called before the clean-up fixture's
    SIGKILL, which would hide them."""
    deadline = time.time() + seconds
    while time.time() < deadline and tagged_processes(proc.tag):
        time.sleep(0.05)
    return tagged_processes(proc.tag)


def _finish(proc, timeout=60):
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail('the converter did not stop within %d s' % timeout)


def test_sigterm_stops_like_ctrl_c(big_source, tmp_path):
    folder = str(tmp_path / 'out')
    proc = _start(big_source, os.path.join(folder, 'p'))
    _mid_run(proc, folder)
    proc.send_signal(signal.SIGTERM)
    _, err = _finish(proc)
    assert proc.returncode == 143
    assert err == 'im2rec.py: error: terminated\n'
    assert _left_behind(proc) == []
    assert os.listdir(folder) == []


def test_a_second_ctrl_c_is_still_one_line(big_source, tmp_path):
    folder = str(tmp_path / 'out')
    proc = _start(big_source, os.path.join(folder, 'p'))
    _mid_run(proc, folder)
    for _ in range(2):       # as a terminal does: to the whole process group
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.01)
    _, err = _finish(proc)
    assert err == 'im2rec.py: error: interrupted\n'
    # 130, or killed by the second SIGINT once Python has put back the default action at the
    # very end of its shutdown: a shell reports both as 130.
    assert proc.returncode in (130, -signal.SIGINT)
    assert _left_behind(proc) == []
    assert os.listdir(folder) == []


def test_sigkill_leaves_no_worker_and_the_next_run_removes_its_temporaries(big_source, tmp_path):
    folder = str(tmp_path / 'out')
    proc = _start(big_source, os.path.join(folder, 'p'))
    _mid_run(proc, folder)
    proc.kill()
    _finish(proc)
    assert _left_behind(proc) == []
    assert _partials(folder)                 # a killed process cannot clean up after itself
    again = _start(big_source, os.path.join(folder, 'p'), '--resize', '16')
    _, err = _finish(again)
    assert again.returncode == 0, err
    assert _left_behind(again) == []
    assert _partials(folder) == []
    assert sorted(os.listdir(folder)) == ['p.idx', 'p.lst', 'p.rec', 'p_labels.txt']


def test_a_second_conversion_into_the_same_prefix_is_refused(big_source, tmp_path):
    folder = str(tmp_path / 'out')
    first = _start(big_source, os.path.join(folder, 'p'), '--resize', '64')
    _mid_run(first, folder)
    second = _start(big_source, os.path.join(folder, 'p'), '--resize', '32', '--overwrite')
    _, err = _finish(second)
    assert second.returncode == 2 and err.count('\n') == 1
    assert 'in use by another conversion (PID %d)' % first.pid in err
    out, err = _finish(first)
    assert first.returncode == 0, err
    assert 'all: %d records' % _count(big_source) in out
    assert _left_behind(second) == [] and _left_behind(first) == []
    # The first conversion's files are whole and its own: every record read back through the
    # index is an image at its --resize 64 (the refused second asked for 32).
    prefix = os.path.join(folder, 'p')
    reader = mx.recordio.MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'r')
    try:
        assert len(reader.keys) == _count(big_source)
        for key in reader.keys:
            _, image = mx.recordio.unpack_img(reader.read_idx(key))
            assert min(image.shape[:2]) == 64, (key, image.shape)
    finally:
        reader.close()


def test_a_file_that_appears_meanwhile_is_not_overwritten(big_source, tmp_path):
    folder = str(tmp_path / 'out')
    proc = _start(big_source, os.path.join(folder, 'p'))
    _mid_run(proc, folder)
    with open(os.path.join(folder, 'p.rec'), 'wb') as handle:
        handle.write(b'written by someone else')
    _, err = _finish(proc)
    assert proc.returncode == 2 and err.count('\n') == 1
    assert '%s appeared while this conversion ran' % os.path.join(folder, 'p.rec') in err
    assert sorted(os.listdir(folder)) == ['p.rec']
    assert open(os.path.join(folder, 'p.rec'), 'rb').read() == b'written by someone else'


def test_a_worker_killed_mid_run_costs_one_image_not_the_run(big_source, tmp_path):
    folder = str(tmp_path / 'out')
    proc = _start(big_source, os.path.join(folder, 'p'))
    os.kill(_mid_run(proc, folder)[0], signal.SIGKILL)
    out, err = _finish(proc)
    assert proc.returncode == 0, err
    assert 'all: %d records' % (_count(big_source) - 1) in out
    with open(os.path.join(folder, 'p_skipped.txt'), encoding='utf-8') as handle:
        (line,) = handle.read().splitlines()
    assert line.split('\t')[1].startswith('the worker decoding it died (SIGKILL)')
    assert _left_behind(proc) == []
