"""What every task of a Slurm or MPI job runs: ``python -m alexnet_mxnet.tools.task``.

srun and mpirun start tasks, not roles: this finds the task's place in the job from its rank
(``SLURM_PROCID``, or the MPI rank), sets that role's ``DMLC_*`` variables and runs the role
(the worker command, or the server loop) under ``launcher.run_task``, which prefixes its output
and reports how it ended. launch.py writes its command line with ``task_argv``.
"""
import argparse
import os
import sys

from alexnet_mxnet.base.argtypes import NON_NEGATIVE, POSITIVE_INT, bounded
from alexnet_mxnet.base.cli import OneLineErrorParser, run_cli
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.tools.launcher import run_task
from alexnet_mxnet.tools.roles import (Proc, dmlc_env, first_slot, interface_address, job_roles,
                                       parse_env_pairs, role_argv)

# Where each resource manager puts a task's rank. (mpirun inside a Slurm allocation leaves
# SLURM_PROCID of its own daemons in the environment: an MPI task never reads it.)
RANK_VARIABLES = {'slurm': ('SLURM_PROCID',),
                  'mpi': ('OMPI_COMM_WORLD_RANK', 'PMI_RANK', 'PMIX_RANK')}


def task_argv(python, launcher, *, num_workers, num_servers, root_uri, port, interface=None,
              env=None, server_env=None, worker_env=None, grace=5.0, role=None, command=()):
    """The command line of a task: the job's shape and the scheduler's address, the
    ``--env`` variables, and (for a worker) the worker command."""
    argv = [python, '-m', 'alexnet_mxnet.tools.task', '--launcher', launcher,
            '--workers', str(num_workers), '--servers', str(num_servers),
            '--root-uri', root_uri, '--port', str(port), '--grace', repr(float(grace))]
    if interface:
        argv += ['--interface', interface]
    if role:
        argv += ['--role', role]
    for flag, pairs in (('--env', env), ('--env-server', server_env),
                        ('--env-worker', worker_env)):
        for name, value in sorted((pairs or {}).items()):
            argv += [flag, '%s=%s' % (name, value)]
    return argv + (['--'] + list(command) if command else [])


def build_parser():
    parser = OneLineErrorParser(prog='python -m alexnet_mxnet.tools.task',
                                description='One task of a job that launch.py started with '
                                            'srun or mpirun (not for direct use).')
    parser.add_argument('--launcher', choices=sorted(RANK_VARIABLES), required=True)
    parser.add_argument('--workers', type=POSITIVE_INT, required=True)
    parser.add_argument('--servers', type=POSITIVE_INT, required=True)
    parser.add_argument('--root-uri', required=True)
    parser.add_argument('--port', type=bounded(int, 1, 65535), required=True)
    parser.add_argument('--grace', type=NON_NEGATIVE, default=5.0)
    parser.add_argument('--interface', default=None)
    parser.add_argument('--role', choices=('scheduler', 'server', 'worker'), default=None,
                        help='this task\'s role (an MPMD context); default: from the rank')
    for flag in ('--env', '--env-server', '--env-worker'):
        parser.add_argument(flag, action='append', default=[])
    parser.add_argument('command', nargs=argparse.REMAINDER)
    return parser


def task_rank(launcher, environ):
    """This task's rank, from the variable its resource manager sets."""
    for name in RANK_VARIABLES[launcher]:
        if environ.get(name, '').isdigit():
            return int(environ[name])
    raise UsageError('no task rank: %s is not set (launch.py --launcher %s starts this through '
                     '%s)' % (' or '.join(RANK_VARIABLES[launcher]), launcher,
                              'srun' if launcher == 'slurm' else 'mpirun'))


def place(rank, num_workers, num_servers, role=None):
    """``(role, index)`` of the task of rank ``rank``; ``role``, if given, must agree."""
    slots = job_roles(num_workers, num_servers)
    if not 0 <= rank < len(slots) or (role and slots[rank][0] != role):
        raise UsageError('task rank %d has no %s in a job of 1 scheduler, %d servers and %d '
                         'workers: the job was started with other counts'
                         % (rank, role or 'place', num_servers, num_workers))
    role = slots[rank][0]
    return role, rank - first_slot(role, num_servers)


def stop_command(launcher, environ):
    """How to send every task of this Slurm step one SIGTERM (srun itself, when signalled,
    kills the tasks at once), or None."""
    if launcher == 'slurm' and environ.get('SLURM_JOB_ID') and environ.get('SLURM_STEP_ID'):
        return ['scancel', '--signal=TERM', '%s.%s' % (environ['SLURM_JOB_ID'],
                                                        environ['SLURM_STEP_ID'])]
    return None


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    role, index = place(task_rank(args.launcher, os.environ), args.workers, args.servers,
                        args.role)
    if role == 'worker' and not command:
        raise UsageError('no worker command after --')
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env.update(dmlc_env(role, root_uri=args.root_uri, port=args.port,
                        num_workers=args.workers, num_servers=args.servers,
                        node_host=interface_address(args.interface) if args.interface else None,
                        interface=args.interface))
    env.update(parse_env_pairs(args.env))
    env.update(parse_env_pairs(args.env_worker if role == 'worker' else args.env_server))
    return run_task(Proc(role, index, role_argv(role, command), env, None), grace=args.grace,
                    stop_command=stop_command(args.launcher, os.environ))


if __name__ == '__main__':
    sys.exit(run_cli(main))
