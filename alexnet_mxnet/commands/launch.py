"""Launch a distributed MXNet job: a scheduler, servers and workers, with the stock flags.

One machine, 2 workers and 1 server over loopback:
    python launch.py -n 2 -s 1 python train_imagenet.py --kv-store dist_sync ...
Several machines (the hostfile lists one host per line; the scheduler runs here):
    python launch.py -n 4 -s 2 --launcher ssh -H hosts python train_imagenet.py --kv-store dist_sync ...
Inside a Slurm allocation (sbatch, salloc), or through Open MPI's mpirun:
    python launch.py -n 4 -s 4 --launcher slurm --interface ib0 python train_imagenet.py ...
    python launch.py -n 4 -s 4 --launcher mpi -H hostfile python train_imagenet.py ...
"""
import argparse
import sys

from alexnet_mxnet.base.argtypes import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_INT, bounded
from alexnet_mxnet.base.cli import OneLineErrorParser
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.tools.launch_local import local_job
from alexnet_mxnet.tools.launch_ssh import parse_hostfile, ssh_job
from alexnet_mxnet.tools.launcher import run_with_restarts
from alexnet_mxnet.tools.mpi import mpi_job
from alexnet_mxnet.tools.roles import parse_env_pairs
from alexnet_mxnet.tools.slurm import slurm_job

LAUNCHERS = ('local', 'ssh', 'slurm', 'mpi')


def build_parser():
    parser = OneLineErrorParser(
        description='Start a parameter-server job (scheduler, servers, workers) for a command '
                    'that uses an MXNet dist_* kvstore. Output is forwarded with a [role index] '
                    'prefix (the index is the launch slot; the kvstore rank is assigned by '
                    'ps-lite). The job stops as soon as any process fails and the exit status '
                    'is that of the first failure.',
        epilog='Example: python launch.py -n 2 -s 1 python train_imagenet.py --kv-store dist_sync',
        usage='%(prog)s -n WORKERS [-s SERVERS] [--launcher local|ssh|slurm|mpi] [-H HOSTFILE] '
              '[options] COMMAND...')
    parser.add_argument('-n', '--num-workers', type=POSITIVE_INT, required=True,
                        help='number of worker processes, each running COMMAND')
    parser.add_argument('-s', '--num-servers', type=POSITIVE_INT, default=None,
                        help='number of server processes (default: as many as workers)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default=None,
                        help='local: every process on this machine over loopback; ssh: servers '
                             'and workers round-robin over the hosts of -H; slurm: one srun step '
                             'over the nodes of the allocation this runs in; mpi: one MPMD '
                             'mpirun (Open MPI only) over the hosts of -H, or this machine '
                             '(default: ssh when -H is given, else local)')
    parser.add_argument('-H', '--hostfile',
                        help='ssh: a file with one host (host, user@host or host:sshport) per '
                             'line; mpi: mpirun\'s hostfile (host slots=N per line)')
    parser.add_argument('--port', type=bounded(int, 1, 65535), default=None,
                        help='scheduler port (default: a free one)')
    parser.add_argument('--timeout', type=NON_NEGATIVE, default=None, metavar='SECONDS',
                        help='stop the whole job after this many seconds, exit status 124 '
                             '(default: no limit)')
    parser.add_argument('--grace', type=NON_NEGATIVE, default=5.0, metavar='SECONDS',
                        help='how long a process gets to exit after SIGTERM before SIGKILL: after '
                             'a failure (which ends the job within about this long), and for a '
                             'trainer told to stop, to save its checkpoint (default: %(default)s)')
    parser.add_argument('--max-restarts', type=NON_NEGATIVE_INT, default=0, metavar='N',
                        help='after a failure (a process exiting non-zero or killed), run the '
                             'whole job again, up to N times, logging each restart with its '
                             'cause; not after a usage error (exit status 2), --timeout, or a '
                             'stop (Ctrl-C or SIGTERM to launch.py, a stop signal from Slurm). '
                             'Give the trainer --load-epoch auto so that each run resumes from '
                             'the newest checkpoint (default: %(default)s)')
    parser.add_argument('--env', action='append', default=[], metavar='VAR:value',
                        help='set an environment variable in every process (repeatable)')
    parser.add_argument('--env-server', action='append', default=[], metavar='VAR:value',
                        help='set an environment variable in the scheduler and servers')
    parser.add_argument('--env-worker', action='append', default=[], metavar='VAR:value',
                        help='set an environment variable in the workers')
    parser.add_argument('--python', default=sys.executable,
                        help='interpreter with mxnet that runs the scheduler and servers and, '
                             'for slurm and mpi, every task\'s wrapper (so it needs this package '
                             'too) (default: this one, %(default)s; the same path on every host)')
    remote = parser.add_argument_group('ssh, slurm and mpi launchers')
    remote.add_argument('--interface', default=None,
                        help='network interface ps-lite uses on every host (DMLC_INTERFACE, '
                             'e.g. eth0 or ib0)')
    remote.add_argument('--root-uri', default=None,
                        help='the scheduler\'s address as the hosts reach it (default: ssh: '
                             'this machine\'s on the route to the first host; slurm, mpi: the '
                             'first node\'s, on --interface when that node is this machine)')
    remote.add_argument('--workdir', default=None,
                        help='ssh: directory on the hosts to run in (default: the current '
                             'directory)')
    remote.add_argument('--launcher-args', default='', metavar='OPTIONS',
                        help='slurm, mpi: more options for srun or mpirun, as one argument '
                             'written with "=", e.g. --launcher-args="--cpu-bind=none" or '
                             '--launcher-args="--oversubscribe --mca btl ^openib"')
    parser.add_argument('command', nargs=argparse.REMAINDER, metavar='COMMAND',
                        help='the worker command, e.g. python train_imagenet.py --kv-store dist_sync')
    return parser


def check_launcher_flags(args, launcher):
    """Flags that the chosen launcher would not use are mistakes, said at once."""
    unused = {'local': ('hostfile', 'interface', 'root_uri', 'workdir', 'launcher_args'),
              'ssh': ('launcher_args',), 'slurm': ('hostfile', 'workdir'),
              'mpi': ('workdir',)}[launcher]
    given = ['--%s' % name.replace('_', '-') if name != 'hostfile' else '-H'
             for name in unused if getattr(args, name)]
    if given:
        raise UsageError('%s %s not used by --launcher %s' % (
            ', '.join(given), 'is' if len(given) == 1 else 'are', launcher))
    if launcher == 'ssh' and not args.hostfile:
        raise UsageError('--launcher ssh needs -H HOSTFILE')


def job_maker(args, command):
    """A function returning the job's processes, made afresh for every (re)start."""
    launcher = args.launcher or ('ssh' if args.hostfile else 'local')
    check_launcher_flags(args, launcher)
    num_servers = args.num_workers if args.num_servers is None else args.num_servers
    common = dict(port=args.port, env=parse_env_pairs(args.env),
                  server_env=parse_env_pairs(args.env_server),
                  worker_env=parse_env_pairs(args.env_worker), python=args.python)
    if launcher == 'ssh':
        hosts = parse_hostfile(args.hostfile)
        return lambda: ssh_job(hosts, args.num_workers, num_servers, command,
                               root_uri=args.root_uri, workdir=args.workdir,
                               interface=args.interface, **common)
    if launcher in ('slurm', 'mpi'):
        common.update(root_uri=args.root_uri, interface=args.interface, grace=args.grace,
                      launcher_args=args.launcher_args)
        if launcher == 'mpi':
            common['hostfile'] = args.hostfile
        make = slurm_job if launcher == 'slurm' else mpi_job
        return lambda: make(args.num_workers, num_servers, command, **common)
    return lambda: local_job(args.num_workers, num_servers, command, **common)


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    make_procs = job_maker(args, command)
    make_procs()        # every usage error before anything starts
    return run_with_restarts(make_procs, args.max_restarts, timeout=args.timeout,
                             grace=args.grace)
