# Copyright (c) The proscale Authors. All rights reserved.
"""Training speed on a busy CPU machine: one job alone, beside a CPU-bound
process, and two jobs at once, under several thread policies.

Every measurement is a fresh Python process (the OpenMP runtime reads its
environment once, when torch loads it) that trains the tiny synthetic
config for a few iterations with mmengine's runner, exactly as
``tools/train.py`` does, and reports the median seconds per iteration
after a warm-up. The policies are measured one after the other in one run,
so that their ratios share the machine's conditions.
"""
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

# The OpenMP / BLAS settings a policy controls; removed from the inherited
# environment so that every policy starts from the same (library) defaults.
THREAD_ENV_KEYS = ('OMP_WAIT_POLICY', 'OMP_NUM_THREADS', 'GOMP_SPINCOUNT',
                   'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')
SCENARIOS = ('alone', 'beside a CPU-bound process', 'two jobs at once')
# torch first, so that the policy's environment reaches libgomp unchanged
# (importing proscale first would default OMP_WAIT_POLICY to PASSIVE).
_WORKER = ('import sys, torch; from proscale.analysis.contention import '
           'run_worker; run_worker(sys.argv[1:])')
_SPINNER = 'while True: pass'


@dataclass(frozen=True)
class ThreadPolicy:
    """How a training process uses its CPU threads.

    Args:
        name (str): Name in the report.
        env (dict[str, str]): Environment variables set for the process
            (e.g. ``OMP_WAIT_POLICY``).
        threads (int, optional): ``torch.set_num_threads`` before training;
            None keeps torch's default (one thread per physical core).
    """
    name: str
    env: Dict[str, str] = field(default_factory=dict)
    threads: Optional[int] = None


POLICIES = (
    ThreadPolicy('before: OMP_WAIT_POLICY unset'),
    ThreadPolicy('now: OMP_WAIT_POLICY=PASSIVE',
                 dict(OMP_WAIT_POLICY='PASSIVE')),
    ThreadPolicy('PASSIVE, 1 torch thread', dict(OMP_WAIT_POLICY='PASSIVE'),
                 threads=1),
)
"""The policies compared by ``tools/analysis/benchmark_contention.py``: the
tools' defaults before and since :mod:`proscale.openmp_env` (torch's default
threads: one per physical core), and one thread per job for reference."""


def worker_env(policy: ThreadPolicy) -> Dict[str, str]:
    """The environment of a training process under ``policy``."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV_KEYS}
    env.update(policy.env)
    return env


def train_seconds_per_iter(config: str, data_root: str, work_dir: str,
                           iters: int, warmup: int,
                           threads: Optional[int]) -> float:
    """Train ``config`` for ``warmup + iters`` iterations in this process.

    Args:
        config (str): A config based on
            ``configs/_base_/datasets/synthetic_panoptic.py``.
        data_root (str): The synthetic dataset's root (ending with '/').
        work_dir (str): The runner's work dir.
        iters (int): Timed iterations.
        warmup (int): Untimed iterations before them.
        threads (int, optional): torch intra-op threads; None keeps torch's.

    Returns:
        float: Median seconds per timed iteration (mmengine's
        ``IterTimerHook`` time: data loading, forward, backward, step).
    """
    import torch
    from mmengine.runner import Runner

    from ..utils.cli import load_config
    if threads is not None:
        torch.set_num_threads(threads)
    total = warmup + iters
    cfg = load_config(
        config, {
            'train_dataloader.dataset.data_root': data_root,
            'train_cfg.max_iters': total,
            'default_hooks.logger.interval': total,
            'default_hooks.checkpoint.interval': total + 1,
            'default_hooks.checkpoint.save_last': False,
            'val_dataloader': None,
            'val_cfg': None,
            'val_evaluator': None,
        })
    cfg.work_dir = work_dir
    runner = Runner.from_cfg(cfg)
    runner.train()
    times = runner.message_hub.get_scalar('train/time').data[0]
    return float(statistics.median(times[warmup:]))


def run_worker(argv: Sequence[str]) -> None:
    """Entry point of a measuring process: ``CONFIG DATA_ROOT WORK_DIR
    ITERS WARMUP THREADS`` (THREADS 0: torch's default); prints one JSON
    line, ``{"s_per_iter": ..., "threads": ...}``."""
    import torch
    config, data_root, work_dir, iters, warmup, threads = argv
    seconds = train_seconds_per_iter(config, data_root, work_dir, int(iters),
                                     int(warmup),
                                     int(threads) or None)
    # The measuring process's result, read by the parent from stdout.
    sys.stdout.write(
        json.dumps(dict(s_per_iter=seconds, threads=torch.get_num_threads()))
        + '\n')


class ContentionBenchmark:
    """Measure a tiny training under each policy in each scenario.

    Args:
        config (str): The config to train.
        data_root (str): Its synthetic dataset (ending with '/').
        policies (Sequence[ThreadPolicy]): The policies to compare.
        iters (int): Timed iterations per measurement.
        warmup (int): Untimed iterations before them.
        work_dir (str): Where the runs write (their logs).
    """

    def __init__(self, config: str, data_root: str,
                 policies: Sequence[ThreadPolicy], iters: int, warmup: int,
                 work_dir: str) -> None:
        self.config = config
        self.data_root = data_root
        self.policies = list(policies)
        self.iters = iters
        self.warmup = warmup
        self.work_dir = work_dir
        self._runs = 0

    def _start_job(self, policy: ThreadPolicy) -> subprocess.Popen:
        self._runs += 1
        work_dir = osp.join(self.work_dir, f'run{self._runs}')
        args = [
            self.config, self.data_root, work_dir, self.iters, self.warmup,
            policy.threads or 0
        ]
        return subprocess.Popen(
            [sys.executable, '-c', _WORKER, *map(str, args)],
            env=worker_env(policy),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True)

    @staticmethod
    def _result(job: subprocess.Popen) -> dict:
        stdout, stderr = job.communicate()
        if job.returncode != 0:
            raise RuntimeError('a measuring process failed:\n' +
                               stderr[-2000:])
        return json.loads(stdout.strip().splitlines()[-1])

    def measure(self, policy: ThreadPolicy, scenario: str) -> List[dict]:
        """Run one measurement.

        Args:
            policy (ThreadPolicy): The training processes' policy.
            scenario (str): One of :data:`SCENARIOS`.

        Returns:
            list[dict]: One result per training process (two for 'two jobs
            at once'), each with ``s_per_iter`` and ``threads``.
        """
        spinner = None
        if scenario == SCENARIOS[1]:
            spinner = subprocess.Popen([sys.executable, '-c', _SPINNER])
            time.sleep(0.5)
        try:
            jobs = [self._start_job(policy)]
            if scenario == SCENARIOS[2]:
                jobs.append(self._start_job(policy))
            return [self._result(job) for job in jobs]
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()

    def run(self, log=print) -> List[dict]:
        """Measure every policy in every scenario, scenario by scenario.

        Args:
            log (callable): Called with a line per finished measurement.

        Returns:
            list[dict]: One row per (policy, scenario): ``policy``,
            ``scenario``, ``threads``, ``s_per_iter`` (mean over the jobs),
            ``speed_vs_alone`` (the policy's solo s/iter over this one; 0.5
            is a fair share of a machine used by two jobs) and
            ``speedup_vs_first`` (the first policy's s/iter in the same
            scenario over this one).
        """
        rows = []
        for scenario in SCENARIOS:
            for policy in self.policies:
                results = self.measure(policy, scenario)
                seconds = statistics.mean(r['s_per_iter'] for r in results)
                rows.append(
                    dict(policy=policy.name, scenario=scenario,
                         threads=results[0]['threads'], s_per_iter=seconds))
                log(f'{policy.name:<32} {scenario:<28} '
                    f'{seconds:7.3f} s/iter')
        alone = {r['policy']: r['s_per_iter'] for r in rows
                 if r['scenario'] == SCENARIOS[0]}
        first = {r['scenario']: r['s_per_iter'] for r in rows
                 if r['policy'] == self.policies[0].name}
        for row in rows:
            row['speed_vs_alone'] = alone[row['policy']] / row['s_per_iter']
            row['speedup_vs_first'] = (
                first[row['scenario']] / row['s_per_iter'])
        return rows


def format_table(rows: Sequence[dict]) -> str:
    """The benchmark's rows as a Markdown table."""
    lines = [
        '| Policy | Threads | Scenario | s/iter | Speed vs. alone | '
        'Speed-up vs. first policy |',
        '| --- | ---: | --- | ---: | ---: | ---: |'
    ]
    for row in rows:
        lines.append(f"| {row['policy']} | {row['threads']} | "
                     f"{row['scenario']} | {row['s_per_iter']:.3f} | "
                     f"{row['speed_vs_alone']:.2f} | "
                     f"{row['speedup_vs_first']:.1f} |")
    return '\n'.join(lines)


def make_benchmark_dataset(root: str, num_train: int = 16) -> str:
    """Generate a small synthetic panoptic dataset for the benchmark.

    Args:
        root (str): Folder to create it in.
        num_train (int): Training images (128x128).

    Returns:
        str: Its data root, ending with '/'.
    """
    from ..datasets import generate_synthetic_panoptic
    generate_synthetic_panoptic(root, num_train=num_train, num_val=1)
    return osp.join(root, '')


def default_work_dir() -> str:
    """A fresh temporary folder for the benchmark's runs."""
    return tempfile.mkdtemp(prefix='proscale_contention_')
