# Copyright (c) The proscale Authors. All rights reserved.
"""Speed of the exit gate's training on cached features, across checkouts.

:func:`compare_gate_training_speed` trains the same gates with the
``train_gate`` of one or more proscale source trees (this one and, e.g., an
older revision checked out beside it), each in a fresh process, interleaved
round by round so that the load of a shared machine hits every tree alike.
Every process only calls ``proscale.eco.exit_samples.load_exit_samples`` and
``proscale.eco.gate_training.train_gate``, whose interface is the same in
every version that has them.
"""
import os
import statistics
import subprocess
import sys
from typing import Dict, List, Sequence

# Run in each tree's process: train GATES gates of ITERS steps (seeds 0..),
# after one untimed short gate; its last stdout line is the seconds per gate.
_TIMING_SCRIPT = r'''
import sys, time
from proscale.eco.exit_samples import load_exit_samples
from proscale.eco.gate_training import train_gate
derived, beta, gates, iters = sys.argv[1], float(sys.argv[2]), \
    int(sys.argv[3]), int(sys.argv[4])
samples = load_exit_samples(derived)
train_gate(samples, beta, iters=10)
start = time.perf_counter()
for seed in range(gates):
    train_gate(samples, beta, iters=iters, seed=seed)
sys.stdout.write(f'{(time.perf_counter() - start) / gates}\n')
'''


def time_gate_training(projects_dir: str, derived: str, beta: float,
                       gates: int, iters: int, threads: int) -> float:
    """Seconds per gate of one tree's ``train_gate``, in a fresh process.

    Args:
        projects_dir (str): The folder holding the tree's ``proscale``
            package (a checkout's ``projects/``).
        derived (str): A derived exit dataset (.npz).
        beta (float): The gates' trade-off.
        gates (int): Gates to train (timed).
        iters (int): Optimiser steps per gate.
        threads (int): ``OMP_NUM_THREADS`` of the process.

    Returns:
        float: Mean seconds per gate.
    """
    env = dict(os.environ, PYTHONPATH=projects_dir,
               OMP_NUM_THREADS=str(threads))
    result = subprocess.run(
        [
            sys.executable, '-c', _TIMING_SCRIPT, derived,
            str(beta),
            str(gates),
            str(iters)
        ],
        env=env,
        capture_output=True,
        text=True)
    if result.returncode != 0:
        raise RuntimeError(f'gate training with {projects_dir} failed:\n'
                           f'{result.stderr.strip()}')
    return float(result.stdout.strip().splitlines()[-1])


def compare_gate_training_speed(projects_dirs: Sequence[str],
                                derived: str,
                                beta: float = 0.003,
                                gates: int = 6,
                                iters: int = 500,
                                rounds: int = 3,
                                threads: int = 1) -> List[Dict]:
    """Time the gate training of several trees, interleaved.

    Args:
        projects_dirs (Sequence[str]): The trees' ``projects/`` folders; the
            first is the reference of the ratios.
        derived (str): A derived exit dataset (.npz).
        beta (float): The gates' trade-off. Defaults to 0.003.
        gates (int): Gates per measurement. Defaults to 6.
        iters (int): Optimiser steps per gate. Defaults to 500.
        rounds (int): Measurements per tree, interleaved. Defaults to 3.
        threads (int): torch CPU threads. Defaults to 1 (as the tools).

    Returns:
        list[dict]: Per tree ``projects_dir``, ``seconds_per_gate`` (every
        round), ``median_seconds_per_gate``, ``median_ms_per_step`` and
        ``ratio`` (its median over the first tree's).
    """
    times: List[List[float]] = [[] for _ in projects_dirs]
    for _ in range(rounds):
        for path, tree_times in zip(projects_dirs, times):
            tree_times.append(
                time_gate_training(path, derived, beta, gates, iters,
                                   threads))
    reference = statistics.median(times[0])
    rows = []
    for path, tree_times in zip(projects_dirs, times):
        median = statistics.median(tree_times)
        rows.append(
            dict(
                projects_dir=path,
                seconds_per_gate=tree_times,
                median_seconds_per_gate=median,
                median_ms_per_step=median / iters * 1e3,
                ratio=median / reference))
    return rows


def format_gate_training_speed(rows: List[Dict]) -> str:
    """Format :func:`compare_gate_training_speed`'s rows as a table.

    Args:
        rows (list[dict]): Its output.

    Returns:
        str: One line per tree.
    """
    lines = [f"{'tree':<40} {'s/gate':>8} {'ms/step':>8} {'ratio':>6}"]
    for row in rows:
        lines.append(f"{row['projects_dir']:<40} "
                     f"{row['median_seconds_per_gate']:8.3f} "
                     f"{row['median_ms_per_step']:8.3f} "
                     f"{row['ratio']:6.2f}")
    return '\n'.join(lines)
