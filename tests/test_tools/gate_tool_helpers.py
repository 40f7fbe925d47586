# Copyright (c) The proscale Authors. All rights reserved.
"""Shared pieces of the gate tool tests: importing a tool, a derived exit
dataset whose images gain from depth, and a gated run of tools/test.py."""
import importlib.util
import pickle
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from proscale.evaluation import ExitDataset
from proscale.evaluation.exit_dataset import (EXIT_DATASET_FORMAT,
                                              EXIT_DATASET_VERSION)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXITS = (2, 3, 4, 5, 6)


def load_tool(name: str, folder: str = 'eco'):
    """Import ``tools/<folder>/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(
        f'{folder}_tool_{name}', REPO_ROOT / 'tools' / folder / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_depth_sensitive_derived(
        path: str,
        gate_inputs: np.ndarray,
        gate_input_levels: int = 1,
        layer1_gate_inputs: Optional[np.ndarray] = None) -> str:
    """Write a derived exit dataset over :data:`EXITS` whose images gain
    from depth in proportion to their gate input channel 0.

    Args:
        path (str): The ``.npz`` to write.
        gate_inputs (np.ndarray): Gate inputs, shape (N, C).
        gate_input_levels (int): Encoder scales in ``gate_inputs``.
        layer1_gate_inputs (np.ndarray, optional): Gate inputs after the
            first encoder layer, shape (N, C).

    Returns:
        str: ``path``, recorded as derived from a parent ``parent.pth``.
    """
    difficulty = 1 / (1 + np.exp(-3 * gate_inputs[:, 0]))
    quality = 0.9 - 0.6 * difficulty[:, None] * np.exp(
        -(np.array(EXITS) - 2) / 1.5)
    pq = np.repeat(quality[:, :, None], 3, axis=2)
    ExitDataset(
        image_ids=np.arange(len(gate_inputs)),
        exits=EXITS,
        pq=pq,
        sq=pq,
        rq=pq,
        gate_inputs=gate_inputs,
        layer1_gate_inputs=layer1_gate_inputs,
        meta=dict(
            format=EXIT_DATASET_FORMAT,
            format_version=EXIT_DATASET_VERSION,
            exits=list(EXITS),
            gate_input_levels=gate_input_levels,
            checkpoint=dict(path='parent.pth', sha256='0' * 64))).save(path)
    return path


def gated_test_predictions(run_tool: Callable, config: str, checkpoint: str,
                           work_dir: Path, cfg_options: Sequence[str],
                           metric: str) -> List[dict]:
    """Run ``tools/test.py`` on a gated model and read its predictions.

    Args:
        run_tool (Callable): The ``run_tool`` fixture.
        config (str): The gated config.
        checkpoint (str): The parent with the gate merged in.
        work_dir (Path): A folder for the run and its ``--out`` file.
        cfg_options (Sequence[str]): ``--cfg-options`` of the dataset.
        metric (str): A metric key the run must print.

    Returns:
        list[dict]: The predictions, each checked to name an exit of
        :data:`EXITS`.
    """
    results = work_dir / 'results.pkl'
    proc = run_tool(
        'tools/test.py',
        config,
        checkpoint,
        '--out',
        str(results),
        '--work-dir',
        str(work_dir / 'work_dir'),
        '--cfg-options',
        *cfg_options,
        timeout=600)
    assert metric in proc.stdout + proc.stderr
    with open(results, 'rb') as f:
        predictions = pickle.load(f)
    assert predictions and all(p['exit_layer'] in EXITS for p in predictions)
    return predictions
