# Copyright (c) The proscale Authors. All rights reserved.
"""OpenMP's wait policy for CPU training and inference on shared machines.

torch's CPU kernels run in OpenMP thread teams (GNU libgomp in the CPU
wheels). By default libgomp's idle threads spin (busy-wait) at the end of
every parallel region before sleeping. When another process holds one of
the cores, a team member is descheduled while the others spin for it, and
every one of the thousands of parallel regions of a training iteration
waits for a scheduler time slice: a tiny training slows down about 10-50x
beside a single CPU-bound process, instead of the 2x that sharing the cores
explains (``tools/analysis/benchmark_contention.py`` measures it).
``OMP_WAIT_POLICY=PASSIVE`` makes idle threads sleep at once.

libgomp reads the variable once, when torch loads it, so it has to be set
before torch is imported: :func:`default_to_passive_openmp_wait` runs
first thing when ``proscale`` is imported, which every tool of this
repository does before torch. This module imports nothing else for that
reason.
"""
import os
import sys

WAIT_POLICY_VAR = 'OMP_WAIT_POLICY'


def default_to_passive_openmp_wait() -> bool:
    """Make OpenMP threads wait passively unless the user chose otherwise.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` when the variable is unset and torch
    is not imported yet (afterwards it would have no effect on this
    process, only on its children). An explicit ``OMP_WAIT_POLICY=ACTIVE``
    is kept.

    Returns:
        bool: Whether this process's OpenMP runtime will wait passively
        because of this call or an earlier setting.
    """
    if 'torch' in sys.modules:
        return os.environ.get(WAIT_POLICY_VAR, '').upper() == 'PASSIVE'
    os.environ.setdefault(WAIT_POLICY_VAR, 'PASSIVE')
    return os.environ[WAIT_POLICY_VAR].upper() == 'PASSIVE'
