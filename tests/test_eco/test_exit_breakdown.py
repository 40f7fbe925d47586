# Copyright (c) The proscale Authors. All rights reserved.
"""Per-group breakdown of per-exit quality and exit choices
(proscale.eco.exit_breakdown and tools/eco/exit_breakdown.py)."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from proscale.eco.exit_breakdown import (exit_breakdown,
                                         format_exit_breakdown, gate_choices,
                                         image_labels)
from proscale.eco.exit_samples import ExitSamples
from proscale.evaluation import ExitDataset
from proscale.evaluation.exit_dataset import (EXIT_DATASET_FORMAT,
                                              EXIT_DATASET_VERSION)
from proscale.models.gates import ExitGate, save_gate

REPO_ROOT = Path(__file__).resolve().parents[2]
EXITS = (2, 4, 6)
# image i: plain images (even ids) are best at exit 2, context images (odd
# ids) only get good at exit 6
QUALITY = np.array([[0.8, 0.8, 0.7], [0.1, 0.2, 0.9], [0.6, 0.5, 0.5],
                    [0.2, 0.3, 0.7]])
IMAGE_IDS = np.array([10, 11, 12, 13])


def _samples() -> ExitSamples:
    # channel 0 tells the groups apart
    inputs = np.array([[0., 1.], [1., 0.], [0., 2.], [1., 3.]])
    return ExitSamples(
        gate_inputs=inputs,
        quality=QUALITY,
        exits=EXITS,
        image_ids=IMAGE_IDS,
        meta=dict(dataset=dict(ann_file='unused')))


def _gate() -> ExitGate:
    """A linear gate that sends images with channel 0 = 1 to exit 6 and
    the others to exit 2."""
    gate = ExitGate(exits=EXITS, in_channels=2)
    with torch.no_grad():
        gate.input_layer.weight.copy_(torch.tensor([[-1., 0.], [0., 0.],
                                                    [1., 0.]]))
        gate.input_layer.bias.copy_(torch.tensor([0.5, 0., -0.5]))
    return gate


def _ann_file(path: Path, key: str = 'context') -> str:
    images = [dict(id=int(i), file_name=f'{i}.jpg') for i in IMAGE_IDS]
    for info in images:
        info[key] = bool(info['id'] % 2)
    path.write_text(json.dumps(dict(images=images, annotations=[])))
    return str(path)


def test_image_labels(tmp_path):
    ann_file = _ann_file(tmp_path / 'ann.json')
    labels = image_labels(ann_file, 'context', [13, 10])
    assert labels.tolist() == ['context=True', 'context=False']
    with pytest.raises(ValueError, match="no field 'hue'"):
        image_labels(ann_file, 'hue', [10])
    with pytest.raises(ValueError, match='no image with id 99'):
        image_labels(ann_file, 'context', [99])
    with pytest.raises(ValueError, match='missing.json'):
        image_labels(str(tmp_path / 'missing.json'), 'context', [10])


def test_exit_breakdown_per_group():
    samples = _samples()
    labels = ['context=False', 'context=True'] * 2
    choices = dict(gate=gate_choices(_gate(), samples))
    assert choices['gate'].tolist() == [0, 2, 0, 2]
    result = exit_breakdown(samples, labels, choices)
    assert result['exits'] == list(EXITS)
    assert list(result['groups']) == ['all', 'context=False', 'context=True']
    plain, context = (result['groups'][name]
                      for name in ('context=False', 'context=True'))
    assert plain['num_images'] == context['num_images'] == 2
    np.testing.assert_allclose(plain['mean_quality'], [0.7, 0.65, 0.6])
    np.testing.assert_allclose(context['mean_quality'], [0.15, 0.25, 0.8])
    np.testing.assert_allclose(result['groups']['all']['mean_quality'],
                               QUALITY.mean(axis=0))
    # the oracle: image 0 ties exits 2 and 4 and goes to the shallower
    assert plain['policies']['oracle']['histogram'] == {2: 1.0, 4: 0.0,
                                                        6: 0.0}
    assert context['policies']['oracle']['histogram'] == {2: 0.0, 4: 0.0,
                                                          6: 1.0}
    gate = context['policies']['gate']
    assert gate['mean_depth'] == 6.0
    assert gate['mean_quality'] == pytest.approx(0.8)
    assert result['groups']['all']['policies']['gate']['mean_depth'] == 4.0
    text = format_exit_breakdown(result)
    assert 'context=True' in text and '80.00' in text and '100.0%' in text
    with pytest.raises(ValueError, match='one label per image'):
        exit_breakdown(samples, labels[:3])
    with pytest.raises(ValueError, match="policy 'bad'"):
        exit_breakdown(samples, labels, dict(bad=np.array([0, 1, 2, 3])))
    with pytest.raises(ValueError, match='exits'):
        gate_choices(ExitGate(exits=(2, 6), in_channels=2), samples)


def _tool():
    spec = importlib.util.spec_from_file_location(
        'eco_tool_exit_breakdown',
        REPO_ROOT / 'tools' / 'eco' / 'exit_breakdown.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exit_breakdown_tool(tmp_path, capsys):
    ann_file = _ann_file(tmp_path / 'panoptic_val.json')
    samples = _samples()
    pq = np.repeat(QUALITY[:, :, None], 3, axis=2)
    derived = str(tmp_path / 'derived.npz')
    ExitDataset(
        image_ids=IMAGE_IDS,
        exits=EXITS,
        pq=pq,
        sq=pq,
        rq=pq,
        gate_inputs=samples.gate_inputs.numpy(),
        meta=dict(
            format=EXIT_DATASET_FORMAT,
            format_version=EXIT_DATASET_VERSION,
            exits=list(EXITS),
            dataset=dict(ann_file=ann_file))).save(derived)
    gate_file = str(tmp_path / 'beta0.pth')
    save_gate(_gate(), dict(gate_cfg=dict(
        type='ExitGate', exits=list(EXITS), in_channels=2)), gate_file)
    out = tmp_path / 'breakdown.json'
    tool = _tool()
    tool.main([
        derived, '--by', 'context', '--gates', gate_file, '--json',
        str(out)
    ])
    printed = capsys.readouterr().out
    assert 'beta0: share of images per exit' in printed
    result = json.loads(out.read_text())
    assert result['by'] == 'context' and result['ann_file'] == ann_file
    context = result['groups']['context=True']
    assert context['policies']['beta0']['histogram'] == {
        '2': 0.0, '4': 0.0, '6': 1.0}

    # bad input: one clear line, exit code 2, nothing written
    out.unlink()
    with pytest.raises(SystemExit) as error:
        tool.main([derived, '--by', 'hue', '--json', str(out)])
    assert error.value.code == 2
    assert "no field 'hue'" in capsys.readouterr().err
    assert not out.exists()
