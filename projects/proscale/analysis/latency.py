# Copyright (c) The proscale Authors. All rights reserved.
"""Side-by-side latency and peak-memory benchmark.

Several models (or model parts) are timed in one process, interleaved run by
run, so that they share the machine's state (thread pool, caches, load from
other processes) and their ratios are fair even on a busy machine.
"""
import ctypes
import ctypes.util
import re
import statistics
import time
from functools import partial
from typing import Any, Callable, Dict, List, Tuple

import torch
import torch.nn as nn

from ..ops import fused_ops
from .model_utils import TensorForward, encoder_workload, fixed_shape_batch

BENCHMARK_PARTS = ('encoder', 'model')
# Labels of the two deformable attention paths in compare_fused_paths.
CPU_PATHS = ('fused', 'pytorch')
_PROC_STATUS = '/proc/self/status'
_PROC_CLEAR_REFS = '/proc/self/clear_refs'
# Writing '5' to clear_refs resets the peak resident set size (VmHWM).
_RESET_PEAK_RSS = '5'
_KIB = 1024
_MIB = 1024**2


def _read_status_kib(field: str) -> int:
    """Read a memory field (in KiB) of ``/proc/self/status``."""
    with open(_PROC_STATUS) as f:
        match = re.search(rf'^{field}:\s+(\d+) kB', f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f'{_PROC_STATUS} has no {field} field')
    return int(match.group(1))


def _release_free_heap() -> None:
    """Return freed heap memory to the OS (glibc), so RSS reflects use."""
    libc_name = ctypes.util.find_library('c')
    libc = ctypes.CDLL(libc_name) if libc_name else None
    if libc is not None and hasattr(libc, 'malloc_trim'):
        libc.malloc_trim(0)


def _synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)


def peak_memory_mb(fn: Callable[[], Any], device: str = 'cpu') -> float:
    """Peak memory that one call of ``fn`` adds to what is already held.

    On CUDA this is ``torch.cuda.max_memory_allocated`` during the call minus
    the memory allocated before it. On CPU it is the peak resident set size
    of the process during the call (``VmHWM`` after resetting it through
    ``/proc/self/clear_refs``, Linux only) minus the resident size before it,
    after returning freed heap memory to the OS.

    Args:
        fn (Callable): The workload.
        device (str): 'cpu' or a CUDA device.

    Returns:
        float: Megabytes (MiB).
    """
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / _MIB
    _release_free_heap()
    try:
        with open(_PROC_CLEAR_REFS, 'w') as f:
            f.write(_RESET_PEAK_RSS)
    except OSError as error:
        raise RuntimeError(
            'CPU peak memory needs a writable /proc/self/clear_refs '
            f'(Linux): {error}') from error
    before = _read_status_kib('VmRSS')
    fn()
    return (_read_status_kib('VmHWM') - before) * _KIB / _MIB


def time_call(fn: Callable[[], Any], device: str = 'cpu') -> float:
    """Wall-clock seconds of one call of ``fn`` (synchronised on CUDA)."""
    _synchronize(device)
    start = time.perf_counter()
    fn()
    _synchronize(device)
    return time.perf_counter() - start


def benchmark(workloads: Dict[str, Callable[[], Any]],
              runs: int = 10,
              warmup: int = 2,
              device: str = 'cpu') -> Dict[str, Dict[str, float]]:
    """Time workloads interleaved and measure their peak memory.

    Each round calls every workload once, in the given order; ``warmup``
    rounds are discarded, then ``runs`` rounds are timed. Peak memory is
    measured afterwards with one more call per workload.

    Args:
        workloads (dict[str, Callable]): Name to a no-argument callable. The
            first is the reference for the ratios.
        runs (int): Timed rounds. Defaults to 10.
        warmup (int): Untimed rounds first. Defaults to 2.
        device (str): 'cpu' or a CUDA device. Defaults to 'cpu'.

    Returns:
        dict: Per name ``median_s``, ``min_s``, ``max_s``, ``ratio`` (median
        over the first workload's median) and ``peak_mem_mb``.
    """
    if not workloads:
        raise ValueError('benchmark needs at least one workload')
    if runs <= 0 or warmup < 0:
        raise ValueError(f'runs must be positive and warmup non-negative, '
                         f'got runs={runs}, warmup={warmup}')
    times: Dict[str, List[float]] = {name: [] for name in workloads}
    for round_index in range(warmup + runs):
        for name, fn in workloads.items():
            elapsed = time_call(fn, device)
            if round_index >= warmup:
                times[name].append(elapsed)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    reference = next(iter(medians.values()))
    results = {}
    for name, fn in workloads.items():
        results[name] = dict(
            median_s=medians[name],
            min_s=min(times[name]),
            max_s=max(times[name]),
            ratio=medians[name] / reference,
            peak_mem_mb=peak_memory_mb(fn, device))
    return results


def make_workload(model: nn.Module,
                  shape: Tuple[int, int],
                  part: str = 'model') -> Callable[[], Any]:
    """Make a no-argument callable running a model (part) on a fixed input.

    Preprocessing (and for ``part='encoder'`` the backbone) runs once here
    and is not part of the workload.

    Args:
        model (nn.Module): A Mask2Former-style detector or segmentor in eval
            mode, on the device to benchmark.
        shape (tuple[int, int]): Input height and width.
        part (str): 'model' for the network forward (``mode='tensor'``, no
            post-processing) or 'encoder' for the encoder alone (the pixel
            decoder on the backbone's features, or a DETR's
            ``forward_encoder`` on its encoder inputs). Defaults to 'model'.

    Returns:
        Callable: Runs the part under ``torch.no_grad``.
    """
    if part not in BENCHMARK_PARTS:
        raise ValueError(
            f'part must be one of {BENCHMARK_PARTS}, got {part!r}')
    with torch.no_grad():
        data = model.data_preprocessor(fixed_shape_batch(model, shape), False)
        if part == 'encoder':
            module = encoder_workload(model, data['inputs'],
                                      data['data_samples'])
        else:
            module = partial(
                TensorForward(model, data['data_samples']), data['inputs'])

    def run() -> Any:
        with torch.no_grad():
            return module()

    return run


def with_cpu_path(fn: Callable[[], Any], path: str) -> Callable[[], Any]:
    """Make a workload run one CPU inference path.

    Args:
        fn (Callable): A workload of :func:`make_workload`.
        path (str): 'fused' (the fast CPU paths of :mod:`proscale.ops`: the
            fused deformable attention kernel and the LPE's max-pool, where
            they apply) or 'pytorch' (the plain PyTorch paths everywhere).

    Returns:
        Callable: ``fn`` run inside :func:`proscale.ops.fused_ops`.
    """
    if path not in CPU_PATHS:
        raise ValueError(f'path must be one of {CPU_PATHS}, got {path!r}')

    def run() -> Any:
        with fused_ops(path == 'fused'):
            return fn()

    return run


def fused_speedups(results: Dict[str, Dict[str, float]],
                   names: List[str]) -> Dict[str, float]:
    """Speed-up of the fused path over the PyTorch path, per workload name.

    Args:
        results (dict): :func:`benchmark` results with the entries
            ``'{name} [fused]'`` and ``'{name} [pytorch]'`` of every name.
        names (list[str]): The workload names.

    Returns:
        dict[str, float]: Median PyTorch-path time over median fused time.
    """
    return {
        name:
        results[f'{name} [pytorch]']['median_s'] /
        results[f'{name} [fused]']['median_s']
        for name in names
    }


def format_benchmark(results: Dict[str, Dict[str, float]]) -> str:
    """Format :func:`benchmark` results as a text table."""
    width = max(len('config'), *map(len, results))
    lines = [
        f"{'config':<{width}} {'median s':>9} {'min s':>8} {'max s':>8} "
        f"{'ratio':>6} {'peak MB':>9}"
    ]
    for name, r in results.items():
        lines.append(f"{name:<{width}} {r['median_s']:>9.4f} "
                     f"{r['min_s']:>8.4f} {r['max_s']:>8.4f} "
                     f"{r['ratio']:>6.3f} {r['peak_mem_mb']:>9.1f}")
    return '\n'.join(lines)
