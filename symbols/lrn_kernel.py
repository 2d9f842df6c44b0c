"""The fused LRN kernel (``lrn_kernel.cc``, the operator ``lrn_fused``) for CPU training.

The fast LRN from stock operators still makes some twenty memory passes a training step; the
kernel makes one forward and one backward. MXNet loads operators from shared libraries
(``mx.library.load``) but its wheel ships no compiled one, so the kernel is compiled here, once
per machine, with the C++ compiler (``$CXX``, else ``g++`` or ``c++``) against the ``lib_api``
that the installed MXNet ships, into ``$XDG_CACHE_HOME/alexnet-mxnet`` (``~/.cache`` without
it). The file name holds a hash of the source, the MXNet version, the compiler's version and
the flags, so a change of any of them builds a new one; the build writes a temporary file and
renames it, so processes that build at once (distributed workers) do not clash.

``ALEXNET_LRN_KERNEL=off`` keeps the stock-operator graph (the same math, slower).
"""
import functools
import hashlib
import os
import shutil
import subprocess

import mxnet as mx

from alexnet_mxnet.base.files import atomic_write

OP = 'lrn_fused'
SWITCH = 'ALEXNET_LRN_KERNEL'
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lrn_kernel.cc')
FLAGS = ['-O3', '-std=c++17', '-shared', '-fPIC', '-fopenmp', '-fno-math-errno']
BUILD_TIMEOUT = 300          # seconds; a build takes about 12 s on one core


def cache_dir():
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'alexnet-mxnet')


def compiler():
    return os.environ.get('CXX') or shutil.which('g++') or shutil.which('c++')


def _mxnet_root():
    return os.path.dirname(os.path.abspath(mx.__file__))


def library_path(program):
    """Where the build for this source, MXNet, compiler and flags lives."""
    version = subprocess.run([program, '--version'], capture_output=True, text=True,
                             timeout=60).stdout
    digest = hashlib.sha256()
    for part in (open(SOURCE, 'rb').read(), mx.__version__.encode(), _mxnet_root().encode(),
                 version.encode(), ' '.join(FLAGS).encode()):
        digest.update(part + b'\0')
    return os.path.join(cache_dir(), 'lrn_kernel-%s.so' % digest.hexdigest()[:16])


def build(program, path):
    """Compile the kernel into ``path`` (atomically); raises ``RuntimeError`` saying why not."""
    root = _mxnet_root()
    lib_api = os.path.join(root, 'src', 'lib_api.cc')
    if not os.path.isfile(lib_api):
        raise RuntimeError('this MXNet ships no src/lib_api.cc to build operators against')

    def compile_into(temporary):
        done = subprocess.run([program] + FLAGS + ['-I', os.path.join(root, 'include'), SOURCE,
                                                    lib_api, '-o', temporary],
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        if done.returncode:
            lines = (done.stderr or done.stdout).strip().splitlines() or ['no output']
            raise RuntimeError('%s failed: %s' % (os.path.basename(program), lines[-1]))
    atomic_write(path, compile_into)


def switched_off():
    return os.environ.get(SWITCH, '').lower() in ('0', 'off', 'no', 'false')


@functools.lru_cache(maxsize=None)
def load():
    """Build (if needed) and load the kernel, once per process; None when ``lrn_fused`` is
    ready, else one line saying why it is not."""
    if switched_off():
        return '%s=%s' % (SWITCH, os.environ[SWITCH])
    program = compiler()
    if not program:
        return 'no C++ compiler (install g++, or set CXX)'
    try:
        path = library_path(program)
        if not os.path.exists(path):
            build(program, path)
        mx.library.load(path, verbose=False)
    except subprocess.TimeoutExpired:
        return 'building it took over %d s' % BUILD_TIMEOUT
    except (OSError, RuntimeError, mx.base.MXNetError) as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return None
