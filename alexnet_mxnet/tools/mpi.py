"""A job started by one MPMD ``mpirun`` (Open MPI's flags): the scheduler, the servers and the
workers as three application contexts, ``-np 1 ... : -np S ... : -np N ...``.

Open MPI ends the whole job when one process exits non-zero, and kills every rank's process
group when it is stopped. Ranks follow the hostfile's order (``--map-by node``: round-robin
over the hosts), so the scheduler, rank 0, runs on its first host.
"""
import os
import shlex
import sys

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.tools.launch_ssh import forwarded_environment
from alexnet_mxnet.tools.roles import Proc, check_counts, free_port, host_address, job_roles
from alexnet_mxnet.tools.task import task_argv

# Besides the DMLC_/PS_/MXNET_/OMP_/KMP_ ones: what a task on another host needs to find
# Python and the package (Open MPI starts remote ranks with the login environment).
FORWARDED = ('PATH', 'PYTHONPATH', 'LD_LIBRARY_PATH', 'VIRTUAL_ENV')


def mpi_hosts(path):
    """The hosts of an MPI hostfile, in order: the first word of each line (Open MPI's
    ``host slots=N``, MPICH's ``host:N``), ``#`` comments."""
    if not os.path.isfile(path):
        raise UsageError('hostfile not found: %s' % path)
    with open(path) as handle:
        hosts = [line.split('#', 1)[0].split()[0].split(':')[0] for line in handle
                 if line.split('#', 1)[0].strip()]
    if not hosts:
        raise UsageError('hostfile %s lists no hosts' % path)
    return hosts


def mpi_job(num_workers, num_servers, command, *, hostfile=None, port=None, env=None,
            server_env=None, worker_env=None, python=sys.executable, root_uri=None,
            interface=None, grace=5.0, launcher_args='', cwd=None):
    """One MPMD ``mpirun`` over the hosts of ``hostfile`` (default: this machine); the
    scheduler's address is the first host's (on ``interface`` when that is this machine), or
    ``root_uri``. ``launcher_args``: more mpirun options, e.g. ``--oversubscribe``."""
    check_counts(num_workers, num_servers, command)
    nodes = os.environ.get('SLURM_JOB_NUM_NODES', '1')
    if not hostfile and not root_uri and nodes != '1':
        # Open MPI would place the ranks on the allocation's nodes while the scheduler's
        # address said this machine: the workers would wait for it forever.
        raise UsageError('--launcher mpi in a Slurm allocation of %s nodes needs -H HOSTFILE '
                         '(its first host runs the scheduler); or use --launcher slurm' % nodes)
    first = mpi_hosts(hostfile)[0] if hostfile else 'localhost'
    root_uri = root_uri or host_address(first, interface)
    shape = dict(num_workers=num_workers, num_servers=num_servers, root_uri=root_uri,
                 port=port or free_port(''), interface=interface, env=env,
                 server_env=server_env, worker_env=worker_env, grace=grace)
    argv = ['mpirun', '--map-by', 'node'] + (['--hostfile', hostfile] if hostfile else [])
    for name in sorted(set(forwarded_environment()) | {n for n in FORWARDED if n in os.environ}):
        argv += ['-x', name]
    argv += shlex.split(launcher_args)
    contexts = []
    for role, count in (('scheduler', 1), ('server', num_servers), ('worker', num_workers)):
        contexts.append(['-np', str(count)] + task_argv(
            python, 'mpi', role=role, command=command if role == 'worker' else (), **shape))
    for number, context in enumerate(contexts):
        argv += ([':'] if number else []) + context
    return [Proc('mpirun', 0, argv, dict(os.environ, PYTHONUNBUFFERED='1'), cwd,
                 job_roles(num_workers, num_servers))]
