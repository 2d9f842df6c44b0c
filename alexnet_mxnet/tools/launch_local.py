"""Every process of a job on this machine, talking over loopback."""
import os
import sys

from alexnet_mxnet.tools.roles import Proc, check_counts, dmlc_env, free_port, job_roles, role_argv


def local_job(num_workers, num_servers, command, *, port=None, env=None, server_env=None,
              worker_env=None, python=sys.executable, cwd=None):
    """The scheduler, servers and workers as processes of this machine."""
    check_counts(num_workers, num_servers, command)
    port = port or free_port()
    procs = []
    for role, index in job_roles(num_workers, num_servers):
        child = dict(os.environ, PYTHONUNBUFFERED='1')
        child.update(dmlc_env(role, root_uri='127.0.0.1', port=port, num_workers=num_workers,
                              num_servers=num_servers, node_host='127.0.0.1', interface='lo'))
        child.update(env or {})
        child.update((worker_env if role == 'worker' else server_env) or {})
        procs.append(Proc(role, index, role_argv(role, command, python), child, cwd))
    return procs
