"""A job inside a Slurm allocation: every role a task of one ``srun`` step.

One step, so Slurm itself ends every task when one fails (``--kill-on-bad-exit``), accounts
for them and kills them with the allocation. Task 0 (the scheduler) runs on the first node of
the allocation; ``--distribution=cyclic`` deals the tasks round-robin over the nodes, so with
as many workers as nodes each node runs one worker.
"""
import os
import shlex
import subprocess
import sys

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.tools.roles import Proc, check_counts, free_port, host_address, job_roles
from alexnet_mxnet.tools.task import task_argv


def allocation_nodes(environ=None):
    """The host names of this job's allocation, first node first."""
    environ = os.environ if environ is None else environ
    if not environ.get('SLURM_JOB_ID') or not environ.get('SLURM_JOB_NODELIST'):
        raise UsageError('--launcher slurm runs inside a Slurm allocation: start launch.py in '
                         'an sbatch script or under salloc (SLURM_JOB_ID is not set)')
    try:
        listed = subprocess.run(['scontrol', 'show', 'hostnames', environ['SLURM_JOB_NODELIST']],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UsageError('cannot list the allocation\'s nodes with scontrol: %s' % err) from None
    nodes = listed.stdout.split()
    if listed.returncode or not nodes:
        raise UsageError('scontrol cannot expand SLURM_JOB_NODELIST=%s: %s'
                         % (environ['SLURM_JOB_NODELIST'], listed.stderr.strip()))
    return nodes


def slurm_job(num_workers, num_servers, command, *, port=None, env=None, server_env=None,
              worker_env=None, python=sys.executable, root_uri=None, interface=None, grace=5.0,
              launcher_args='', cwd=None):
    """One ``srun --kill-on-bad-exit`` step running 1 + S + N tasks over the allocation's nodes;
    the scheduler's address is the first node's (on ``interface`` when that is this machine),
    or ``root_uri``. ``launcher_args``: more srun options, e.g. ``--cpu-bind=none``."""
    check_counts(num_workers, num_servers, command)
    nodes = allocation_nodes()
    root_uri = root_uri or host_address(nodes[0], interface)
    tasks = job_roles(num_workers, num_servers)
    argv = ['srun', '--kill-on-bad-exit=1', '--ntasks=%d' % len(tasks),
            '--nodes=%d' % min(len(nodes), len(tasks)), '--distribution=cyclic', '--overcommit']
    argv += shlex.split(launcher_args)
    argv += task_argv(python, 'slurm', num_workers=num_workers, num_servers=num_servers,
                      root_uri=root_uri, port=port or free_port(''), interface=interface,
                      env=env, server_env=server_env, worker_env=worker_env, grace=grace,
                      command=command)
    return [Proc('srun', 0, argv, dict(os.environ, PYTHONUNBUFFERED='1'), cwd, tasks)]
