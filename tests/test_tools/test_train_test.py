# Copyright (c) The proscale Authors. All rights reserved.
"""End-to-end ``tools/train.py`` and ``tools/test.py`` runs.

Training and testing run as real subprocesses, the way a user runs them;
resuming and the input-error cases run the same scripts in process (no
interpreter start-up and imports: much cheaper).
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from proscale.utils.work_dir_lock import WorkDirLock

TINY_CONFIG = ('configs/mask2former/'
               'mask2former_r18_1xb4-tiny_synthetic-panoptic.py')
TRAIN = 'tools/train.py'
TEST = 'tools/test.py'
# Short runs: 4 iterations of batch 2, a checkpoint and a validation every 2
# iterations, every iteration logged.
SHORT_RUN = ('train_cfg.max_iters=4', 'train_cfg.val_interval=2',
             'default_hooks.checkpoint.interval=2',
             'default_hooks.logger.interval=1',
             'train_dataloader.batch_size=2')


def _log_text(work_dir: Path) -> str:
    """Concatenate the runner logs of every run in ``work_dir``."""
    return '\n'.join(path.read_text()
                     for path in sorted(work_dir.glob('*/*.log')))


def _last_scalars(work_dir: Path) -> dict:
    """Return the last record of the newest run's ``scalars.json``."""
    path = sorted(work_dir.glob('*/vis_data/scalars.json'))[-1]
    return json.loads(path.read_text().strip().splitlines()[-1])


def _train_scalars(work_dir: Path, step: int) -> dict:
    """Return the newest run's logged training scalars of one iteration."""
    path = sorted(work_dir.glob('*/vis_data/scalars.json'))[-1]
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r.get('step') == step and 'lr' in r][-1]


def _checkpoint_iter(path: Path) -> int:
    return torch.load(str(path), map_location='cpu')['meta']['iter']


@pytest.fixture(scope='module')
def trained(tmp_path_factory, run_tool, synthetic_cfg_options):
    """Work dir of a 4-iteration training run of the tiny config, its
    schedule shortened from 300 iterations with ``--max-iters``."""
    work_dir = tmp_path_factory.mktemp('train')
    run_tool(TRAIN, TINY_CONFIG, '--work-dir', work_dir, '--max-iters', 4,
             '--cfg-options', *synthetic_cfg_options, *SHORT_RUN)
    return work_dir


def test_train_validates_with_pq(trained):
    assert (trained / 'iter_2.pth').is_file()
    assert _checkpoint_iter(trained / 'iter_4.pth') == 4
    scalars = _last_scalars(trained)
    assert 0 <= scalars['coco_panoptic/PQ'] <= 100
    assert 'coco/segm_mAP' in scalars
    assert 'Iter(train) [4/4]' in _log_text(trained)


def test_max_iters_shortens_the_whole_schedule(trained):
    """The config's warm-up (20 of 300 iterations) and cosine decay to 1% of
    the lr become 2 and 2 of 4 iterations: the last iteration runs half way
    down the cosine (tests/test_utils/test_schedule.py checks a 100-iteration
    run's end), not at the full lr."""
    base_lr, eta_min = 5e-4, 5e-6
    half_way = eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi / 2)) / 2
    lrs = [_train_scalars(trained, step)['lr'] for step in (1, 2, 3, 4)]
    assert lrs == pytest.approx([base_lr * 0.01, base_lr, base_lr, half_way])


def test_test_evaluates_checkpoint(trained, tmp_path, run_tool,
                                   synthetic_cfg_options):
    out = tmp_path / 'results.pkl'
    run_tool(TEST, TINY_CONFIG, trained / 'iter_4.pth', '--work-dir', tmp_path,
             '--out', out, '--cfg-options', *synthetic_cfg_options)
    assert out.is_file()
    scalars = json.loads(next(tmp_path.glob('*/*.json')).read_text())
    assert 0 <= scalars['coco_panoptic/PQ'] <= 100
    assert {'coco_panoptic/SQ', 'coco_panoptic/RQ'} <= set(scalars)


def test_resume_continues_from_saved_iteration(trained, tmp_path,
                                               run_tool_in_process,
                                               synthetic_cfg_options):
    work_dir = tmp_path / 'resumed'
    shutil.copytree(trained, work_dir)
    code, stderr = run_tool_in_process(TRAIN, TINY_CONFIG, '--work-dir',
                                       work_dir, '--resume', '--cfg-options',
                                       *synthetic_cfg_options, *SHORT_RUN,
                                       'train_cfg.max_iters=6',
                                       'train_cfg.val_interval=6')
    assert code == 0, stderr
    newest_log = sorted(work_dir.glob('*/*.log'))[-1].read_text()
    assert 'resumed epoch: 0, iter: 4' in newest_log
    assert 'Iter(train) [5/6]' in newest_log
    assert 'Iter(train) [1/6]' not in newest_log
    assert _checkpoint_iter(work_dir / 'iter_6.pth') == 6


def _scalars_by_iter(work_dir: Path) -> dict:
    """Map iteration -> training scalars, over every run in ``work_dir``."""
    records = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if 'loss' in record:
                records[record['iter']] = record
    return records


def _kill_after_checkpoint(work_dir: Path, checkpoint: str,
                           args: list) -> None:
    """Start ``tools/train.py`` and SIGKILL it once ``checkpoint`` is the
    last one it saved."""
    proc = subprocess.Popen([sys.executable, TRAIN, *map(str, args)],
                            cwd=Path(__file__).resolve().parents[2],
                            env={
                                **os.environ, 'OMP_NUM_THREADS': '1'
                            },
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = work_dir / 'last_checkpoint'
    deadline = time.monotonic() + 300
    while not (last.is_file() and last.read_text().endswith(checkpoint)):
        assert proc.poll() is None, 'the training ended before the kill'
        assert time.monotonic() < deadline, 'no checkpoint in time'
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_killed_and_resumed_run_matches_uninterrupted_run(
        trained, tmp_path, run_tool, synthetic_cfg_options):
    """SIGKILL after the iteration-2 checkpoint, ``--resume``: iterations 3
    and 4 give the same losses and weights as the uninterrupted run (which
    validated at iteration 2, after that checkpoint)."""
    work_dir = tmp_path / 'killed'
    args = [
        TINY_CONFIG, '--work-dir', work_dir, '--max-iters', 4,
        '--cfg-options', *synthetic_cfg_options, *SHORT_RUN
    ]
    _kill_after_checkpoint(work_dir, 'iter_2.pth', args)
    states = torch.load(
        str(work_dir / 'iter_2.pth'), map_location='cpu')['random_states']
    assert set(states['ranks'][0]) == {'python', 'numpy', 'torch', 'cuda'}
    assert states['data']['iter'] == 2 and states['data']['seed'] is not None
    run_tool(TRAIN, *args[:3], '--resume', work_dir / 'iter_2.pth',
             *args[3:])
    resumed, uninterrupted = _scalars_by_iter(work_dir), _scalars_by_iter(
        trained)
    for it in (3, 4):
        for key in ('loss', 'loss_cls', 'loss_mask', 'loss_dice',
                    'grad_norm'):
            assert resumed[it][key] == uninterrupted[it][key], (it, key)
    weights = [
        torch.load(str(path / 'iter_4.pth'), map_location='cpu')['state_dict']
        for path in (work_dir, trained)
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])


@pytest.mark.heavy
def test_torchrun_trains_and_tests_on_cpu(tmp_path, run_tool,
                                          synthetic_cfg_options):
    """``--launcher pytorch`` on two CPU processes: gloo instead of nccl."""
    work_dir = tmp_path / 'train'
    train = run_tool(
        TRAIN,
        TINY_CONFIG,
        '--launcher',
        'pytorch',
        '--work-dir',
        work_dir,
        '--cfg-options',
        *synthetic_cfg_options,
        *SHORT_RUN,
        'train_cfg.max_iters=2',
        'val_cfg=None',
        'val_dataloader=None',
        'val_evaluator=None',
        nproc=2)
    assert 'Distributed training: True' in train.stdout + train.stderr
    assert "dist_cfg=dict(backend='gloo')" in _log_text(work_dir)
    run_tool(
        TEST,
        TINY_CONFIG,
        work_dir / 'iter_2.pth',
        '--launcher',
        'pytorch',
        '--work-dir',
        tmp_path / 'test',
        '--cfg-options',
        *synthetic_cfg_options,
        nproc=2)
    scalars = json.loads(next(tmp_path.glob('test/*/*.json')).read_text())
    assert 0 <= scalars['coco_panoptic/PQ'] <= 100


def _corrupt_copy(data_root: str, tmp_path: Path, pattern: str) -> str:
    """Copy the dataset and overwrite the files matching ``pattern``."""
    root = tmp_path / 'data'
    shutil.copytree(data_root, root)
    for path in root.glob(pattern):
        path.write_bytes(b'\x00not an image or json')
    return f'{root}/'


@pytest.mark.parametrize('case', [
    'missing_data_root', 'cfg_options_typo', 'unreadable_annotation',
    'unreadable_image'
])
def test_bad_input_gives_one_clear_error(case, tmp_path, run_tool_in_process,
                                         synthetic_data_root,
                                         make_synthetic_cfg_options):
    data_root, extra = synthetic_data_root, []
    if case == 'missing_data_root':
        data_root = str(tmp_path / 'nowhere') + '/'
        named = data_root
    elif case == 'cfg_options_typo':
        extra, named = ['train_cfg.max_iter=3'], 'train_cfg.max_iter'
    elif case == 'unreadable_annotation':
        data_root = _corrupt_copy(data_root, tmp_path,
                                  'annotations/panoptic_train.json')
        named = f'{data_root}annotations/panoptic_train.json'
    else:
        data_root = _corrupt_copy(data_root, tmp_path, 'train/*.jpg')
        named = f'{data_root}train/'
    code, stderr = run_tool_in_process(TRAIN, TINY_CONFIG, '--work-dir',
                                       tmp_path / 'work', '--cfg-options',
                                       *make_synthetic_cfg_options(data_root),
                                       *SHORT_RUN, *extra)
    assert code == 2
    assert 'Traceback' not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith('error')]
    assert len(errors) == 1 and named in errors[0], stderr


def _error_lines(stderr: str) -> list:
    assert 'Traceback' not in stderr
    return [line for line in stderr.splitlines() if line.startswith('error')]


def test_test_refuses_a_checkpoint_of_another_model(trained, tmp_path,
                                                    run_tool_in_process,
                                                    synthetic_cfg_options):
    """The baseline's checkpoint on the PRO-SCALE config: one line naming
    the file and a few keys at fault; ``--non-strict`` loads it anyway."""
    proscale = ('configs/proscale/'
                'mask2former_r18_proscale-333_1xb4-tiny_synthetic-panoptic.py')
    args = (proscale, trained / 'iter_4.pth', '--cfg-options',
            *synthetic_cfg_options)
    code, stderr = run_tool_in_process(TEST, *args, '--work-dir',
                                       tmp_path / 'strict')
    errors = _error_lines(stderr)
    assert code == 2 and len(errors) == 1, stderr
    assert f"checkpoint {trained / 'iter_4.pth'} does not fit" in errors[0]
    assert 'with another shape (panoptic_head.pixel_decoder.' in errors[0]
    assert not (tmp_path / 'strict').exists()
    code, stderr = run_tool_in_process(TEST, *args, '--non-strict',
                                       '--work-dir', tmp_path / 'loose')
    assert code == 0, stderr


@pytest.mark.parametrize('content', [b'', b'not a checkpoint', 'truncated'])
def test_test_names_an_unreadable_checkpoint(content, trained, tmp_path,
                                             run_tool_in_process,
                                             synthetic_cfg_options):
    checkpoint = tmp_path / 'bad.pth'
    if content == 'truncated':
        content = (trained / 'iter_4.pth').read_bytes()[:100000]
    checkpoint.write_bytes(content)
    code, stderr = run_tool_in_process(TEST, TINY_CONFIG, checkpoint,
                                       '--work-dir', tmp_path / 'work',
                                       '--cfg-options',
                                       *synthetic_cfg_options)
    errors = _error_lines(stderr)
    assert code == 2 and len(errors) == 1, stderr
    assert f'checkpoint {checkpoint} cannot be read' in errors[0]
    assert not (tmp_path / 'work').exists()


def test_test_refuses_an_unsupported_out_format(trained, tmp_path,
                                                run_tool_in_process):
    code, stderr = run_tool_in_process(TEST, TINY_CONFIG,
                                       trained / 'iter_4.pth', '--out',
                                       tmp_path / 'x.json', '--work-dir',
                                       tmp_path / 'work')
    assert code == 2
    assert f"--out {tmp_path / 'x.json'}: the dump file must be a .pkl" in (
        stderr)
    assert not (tmp_path / 'work').exists()


@pytest.mark.parametrize('tool', [TRAIN, TEST])
def test_missing_evaluator_file_is_named_before_the_work_dir(
        tool, trained, tmp_path, run_tool_in_process, synthetic_cfg_options):
    missing = tmp_path / 'nowhere.json'
    evaluator = 'val_evaluator' if tool == TRAIN else 'test_evaluator'
    checkpoint = [] if tool == TRAIN else [trained / 'iter_4.pth']
    code, stderr = run_tool_in_process(tool, TINY_CONFIG, *checkpoint,
                                       '--work-dir', tmp_path / 'work',
                                       '--cfg-options',
                                       *synthetic_cfg_options,
                                       f'{evaluator}.0.ann_file={missing}')
    errors = _error_lines(stderr)
    assert code == 2 and len(errors) == 1, stderr
    assert f"{evaluator}.0.ann_file: '{missing}' does not exist" in errors[0]
    assert not (tmp_path / 'work').exists()


def test_annotation_without_categories_is_named(tmp_path, run_tool_in_process,
                                                synthetic_data_root,
                                                make_synthetic_cfg_options):
    root = tmp_path / 'data'
    shutil.copytree(synthetic_data_root, root)
    ann_file = root / 'annotations' / 'panoptic_train.json'
    content = json.loads(ann_file.read_text())
    del content['categories']
    ann_file.write_text(json.dumps(content))
    code, stderr = run_tool_in_process(TRAIN, TINY_CONFIG, '--work-dir',
                                       tmp_path / 'work', '--cfg-options',
                                       *make_synthetic_cfg_options(f'{root}/'),
                                       *SHORT_RUN)
    errors = _error_lines(stderr)
    assert code == 2 and len(errors) == 1, stderr
    assert (f"train_dataloader.dataset.ann_file '{ann_file}': the JSON has "
            "no 'categories' key") in errors[0]


def test_second_training_on_a_busy_work_dir_is_refused(
        tmp_path, run_tool_in_process, synthetic_cfg_options):
    work_dir = tmp_path / 'work'
    with WorkDirLock(str(work_dir)):
        before = sorted(work_dir.iterdir())
        code, stderr = run_tool_in_process(TRAIN, TINY_CONFIG, '--work-dir',
                                           work_dir, '--cfg-options',
                                           *synthetic_cfg_options, *SHORT_RUN)
        after = sorted(work_dir.iterdir())
    errors = _error_lines(stderr)
    assert code == 2 and len(errors) == 1, stderr
    assert f'work dir {work_dir} is in use by another training (pid ' \
        f'{os.getpid()} on host' in errors[0]
    assert after == before  # the refused run wrote nothing


def test_runs_in_one_process_keep_their_own_scalars(tmp_path,
                                                    run_tool_in_process,
                                                    synthetic_cfg_options):
    """Two trainings in one process (as the demo's stages run): each writes
    its scalars to its own work dir (mmdet's configs name every visualizer
    'visualizer', an mmengine global)."""
    for name, iters in (('first', 1), ('second', 2)):
        code, stderr = run_tool_in_process(
            TRAIN, TINY_CONFIG, '--work-dir', tmp_path / name,
            '--cfg-options', *synthetic_cfg_options, *SHORT_RUN,
            f'train_cfg.max_iters={iters}', 'val_cfg=None',
            'val_dataloader=None', 'val_evaluator=None')
        assert code == 0, stderr
    for name, iters in (('first', [1]), ('second', [1, 2])):
        assert sorted(_scalars_by_iter(tmp_path / name)) == iters
        assert len(list((tmp_path / name).glob('*/*.log'))) == 1
