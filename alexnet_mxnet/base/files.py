"""Writing files so that nothing half written is ever seen, and finding out early whether a
folder takes files at all."""
import csv
import errno
import io
import os
import tempfile

import mxnet as mx

from alexnet_mxnet.base.errors import UsageError

# A folder that refuses files for one of these reasons is the user's to fix.
_REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR)


def atomic_write(path, write):
    """Call ``write(tmp_path)``, then rename onto ``path``: readers never see half a file.

    A failed write raises ``OSError`` naming ``path``. MXNet's C++ writers report theirs as an
    ``MXNetError`` without the reason; that becomes ENOSPC when the disk is full (by far the
    usual cause), EIO otherwise."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp',
                               dir=directory)
    os.close(fd)
    try:
        try:
            write(tmp)
        except mx.base.MXNetError:
            full = os.statvfs(directory).f_bavail == 0
            code = errno.ENOSPC if full else errno.EIO
            raise OSError(code, os.strerror(code), path) from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, 'rb') as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.filename == tmp:
            err.filename = path
        remove_quietly(tmp)
        raise
    except BaseException:
        remove_quietly(tmp)
        raise


def remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def write_text(path, text):
    """``text`` as UTF-8, atomically."""
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8', newline='') as handle:
            handle.write(text)
    atomic_write(path, write)


def write_csv(path, header, rows):
    """A CSV file (a header line, then ``rows`` of values), atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, text.getvalue())


def probe_folder(folder, name='write'):
    """Make ``folder`` if needed, then create, write, sync and remove a hidden probe file
    ``.NAME.*.tmp`` in it: a read-only folder, a file where a folder should be or a full disk
    fail now, as ``OSError``, rather than after the work whose results go there."""
    os.makedirs(folder, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix='.%s.' % name, suffix='.tmp', dir=folder)
    try:
        os.write(fd, b'probe\n')
        os.fsync(fd)
    finally:
        os.close(fd)
        os.remove(probe)


def check_output_folder(folder, advice):
    """``probe_folder``, with a folder that refuses files a one-line ``UsageError`` ending in
    ``advice`` (e.g. "give --out-dir a folder you can write to"); other errors (a full disk)
    reach ``run_cli`` as they are."""
    folder = folder or '.'
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError('%s is a file, not a folder: %s' % (folder, advice))
    try:
        probe_folder(folder)
    except OSError as err:
        if err.errno not in _REFUSED:
            raise
        raise UsageError('cannot write in %s (%s): %s' % (folder, err.strerror, advice)) from None
