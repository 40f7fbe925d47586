# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F step B: derive the per-image, per-exit quality dataset.

:class:`DeriveExitDatasetLoop` runs a trained early-exit parent
(``EcoMask2Former``, ``EcoDINO``) over every image of a split: backbone
once, the encoder once layer by layer, the decoder and post-processing at
every exit (``predict_exits_by_feat``). For each image it records the
quality at every exit, scored by the model's task
(``exit_quality_task``; :mod:`proscale.evaluation.exit_quality`): PQ/SQ/RQ
(All/Things/Stuff) exactly as ``CocoPanopticMetric`` (with ``ann_file``)
would compute them on that image alone, or COCO box AP/AP50/AP75 exactly
as pycocotools would; and the gate inputs (``gate_inputs_and_reuse``). The
result is one :class:`~proscale.evaluation.ExitDataset` file (format:
``projects/proscale/evaluation/exit_dataset.py`` and
``docs/eco_derived_dataset.md``).

Robustness:

* partial results go, every ``save_interval`` images per rank, to a new chunk
  file in ``<out_file>.parts/`` (each written atomically, never rewritten);
* with ``resume=True`` the chunks (and a finished ``out_file``) of an earlier
  run with the same provenance are kept and their images skipped, so a killed
  run continues without recomputing or duplicating any image; without it a
  stale ``.parts`` folder is discarded;
* ranks split the remaining images (rank r takes every world_size-th); at the
  end rank 0 merges all chunks, checks that every image of the split occurs
  exactly once, writes ``out_file`` atomically and removes the chunks. A
  failing run never touches an existing ``out_file``.

Images are processed one at a time (batch size 1): mmdet pads a batch to its
largest image, so per-image results would otherwise depend on the batch
composition, and with it on the number of ranks and on where a run resumed.
"""
import copy
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import uuid
from typing import Any, Dict, List, Optional, Sequence

import mmdet
import mmengine
import numpy as np
import torch
from mmdet.registry import DATASETS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.dist import barrier, broadcast_object_list, get_dist_info
from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import BaseLoop
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader, Subset

from ...evaluation.exit_dataset import (EXIT_DATASET_FORMAT,
                                        EXIT_DATASET_VERSION, ExitDataset,
                                        load_exit_dataset)
from ...evaluation.exit_quality import (ExitQualityEvaluator,
                                        build_exit_quality)
from ...utils import unwrap_model
from ...utils.checkpoint_checks import checkpoint_sha256
from ..early_exit_model import early_exit_model

SPLITS = ('train', 'val')
# Meta entries that may differ between the runs of one derivation (resume).
_RUN_SPECIFIC_META = ('config', 'code_version')
# Config keys that only describe how a run was launched (and, below,
# env_cfg.dist_cfg).
_LAUNCH_KEYS = ('launcher', 'work_dir', 'load_from', 'resume',
                'model_wrapper_cfg')


def derive_dataloader_cfg(cfg: Config, split: str) -> dict:
    """Return the dataloader config that derivation runs over.

    Args:
        cfg (Config): The parent model's config.
        split (str): ``'train'`` (the training dataset, with the test
            pipeline: no augmentation) or ``'val'``.

    Returns:
        dict: A dataloader config (``dataset`` and ``num_workers``).
    """
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    test_dataset = cfg.test_dataloader.dataset
    loader = cfg.train_dataloader if split == 'train' else cfg.val_dataloader
    dataset = copy.deepcopy(loader.dataset)
    if 'pipeline' not in dataset:
        raise ValueError(
            f'{split}_dataloader.dataset (type {dataset.get("type")!r}) has '
            'no pipeline; derivation needs a COCO-style dataset '
            '(CocoPanopticDataset, CocoDataset), not a dataset wrapper')
    dataset.pipeline = copy.deepcopy(test_dataset.pipeline)
    return dict(dataset=dataset, num_workers=loader.get('num_workers', 0))


@torch.no_grad()
def derive_image(model: torch.nn.Module, data_batch: dict,
                 exits: Sequence[int], evaluator: ExitQualityEvaluator,
                 image_id: int) -> Dict[str, Any]:
    """Derive one image: quality at every exit and the gate inputs.

    The backbone and the encoder run once (``predict_exits_by_feat``
    decodes every exit of one encoder pass, reusing what the gate inputs
    computed: ``gate_inputs_and_reuse``).

    Args:
        model (nn.Module): An early-exit model (``EcoMask2Former``,
            ``EcoDINO``) in eval mode.
        data_batch (dict): One image as the dataloader yields it
            (``pseudo_collate`` of one sample).
        exits (Sequence[int]): The exits, increasing.
        evaluator (ExitQualityEvaluator): Scores the predictions.
        image_id (int): The image id in the annotation file.

    Returns:
        dict: ``image_id``; ``gate_input`` and, for a model that reads gate
        inputs after the first encoder layer, ``layer1_gate_input`` (the
        tokens after that layer pooled alike), each of shape (L * C, ),
        float32; one array of shape (E, G) per metric of ``evaluator``.
    """
    data = model.data_preprocessor(data_batch, False)
    feats = model.extract_feat(data['inputs'])
    gate_inputs, reuse = model.gate_inputs_and_reuse(
        feats, data['data_samples'], model.gate_input_levels,
        model.gate_input_depths, exits)
    outputs = model.predict_exits_by_feat(feats, data['data_samples'], exits,
                                          **reuse)
    tables = evaluator.evaluate(image_id, [outputs[k][0] for k in exits])
    row = dict(
        image_id=image_id,
        gate_input=gate_inputs[0][0].float().cpu().numpy())
    if 1 in gate_inputs:
        row['layer1_gate_input'] = gate_inputs[1][0].float().cpu().numpy()
    for j, name in enumerate(evaluator.metrics):
        row[name] = tables[:, :, j]
    return row


def _code_version() -> Dict[str, Optional[str]]:
    """Versions of this code (git, if available) and of the main packages."""
    from ... import __version__  # the package is initialised by now
    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))
    try:
        git = subprocess.run(
            ['git', 'describe', '--always', '--dirty', '--tags'],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    return dict(
        proscale=__version__,
        git=git,
        mmdet=mmdet.__version__,
        mmengine=mmengine.__version__,
        torch=torch.__version__)


def _jsonable(value: Any) -> Any:
    """Return ``value`` as it reads back from JSON."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _identity(meta: Dict[str, Any]) -> Dict[str, Any]:
    """The meta entries that must agree for results to be merged."""
    return {k: v for k, v in meta.items() if k not in _RUN_SPECIFIC_META}


@LOOPS.register_module()
class DeriveExitDatasetLoop(BaseLoop):
    """Derive the ECO-M2F exit dataset of a split in one pass per image.

    Build it with ``runner`` and call :meth:`run` after the runner loaded the
    parent checkpoint (``cfg.load_from``), as ``tools/eco/
    derive_exit_dataset.py`` does.

    Args:
        runner (Runner): The runner; its model must be an early-exit
            model (``EcoMask2Former``, ``EcoDINO``) and
            ``runner.cfg.load_from`` its checkpoint.
        dataloader (dict): The split's dataloader config (see
            :func:`derive_dataloader_cfg`): a COCO-style ``dataset`` of the
            model's task (``CocoPanopticDataset`` for panoptic quality,
            ``CocoDataset`` for box AP) with the test pipeline and
            ``num_workers``.
        out_file (str): The output ``.npz`` file.
        split (str): Name of the split, recorded in the meta data.
        exits (Sequence[int], optional): Exits to evaluate; defaults to the
            model's ``exit_layers``.
        resume (bool): Keep and skip the results of an earlier, interrupted
            run with the same provenance. Defaults to False.
        save_interval (int): Images per rank between two chunk files.
            Defaults to 100.
    """

    def __init__(self,
                 runner,
                 dataloader: dict,
                 out_file: str,
                 split: str,
                 exits: Optional[Sequence[int]] = None,
                 resume: bool = False,
                 save_interval: int = 100) -> None:
        if save_interval < 1:
            raise ValueError(
                f'save_interval must be >= 1, got {save_interval}')
        model = early_exit_model(
            runner.model, 'DeriveExitDatasetLoop',
            ('predict_exits_by_feat', 'gate_inputs_and_reuse',
             'exit_quality_task'))
        checkpoint = runner.cfg.get('load_from')
        if not checkpoint or not osp.isfile(checkpoint):
            raise FileNotFoundError(
                'DeriveExitDatasetLoop records the parent checkpoint: '
                f'cfg.load_from must name an existing file, got {checkpoint!r}'
            )
        self.exits: List[int] = model.check_exits(
            model.exit_layers if exits is None else exits, 'exits')
        self.out_file = out_file
        self.parts_dir = f'{out_file}.parts'
        self.resume = resume
        self.save_interval = save_interval

        dataset_cfg = copy.deepcopy(dataloader['dataset'])
        self.dataset = DATASETS.build(dataset_cfg)
        self.dataset.full_init()
        self.evaluator = build_exit_quality(model.exit_quality_task,
                                            self.dataset)
        self.image_ids = np.array([
            self.dataset.get_data_info(i)['img_id']
            for i in range(len(self.dataset))
        ],
                                  dtype=np.int64)
        self.num_workers = dataloader.get('num_workers', 0)

        config = copy.deepcopy(runner.cfg)
        for key in _LAUNCH_KEYS:
            config.pop(key, None)
        # So does the process group (gloo on CPU, init_cpu_distributed).
        (config.get('env_cfg') or {}).pop('dist_cfg', None)
        self.meta: Dict[str, Any] = _jsonable(
            dict(
                format=EXIT_DATASET_FORMAT,
                format_version=EXIT_DATASET_VERSION,
                task=self.evaluator.task,
                exits=self.exits,
                groups=list(self.evaluator.groups),
                metrics=list(self.evaluator.metrics),
                split=split,
                dataset=dict(
                    type=type(self.dataset).__name__,
                    data_root=self.dataset.data_root,
                    ann_file=self.dataset.ann_file,
                    data_prefix=self.dataset.data_prefix,
                    classes=list(self.dataset.metainfo['classes']),
                    num_images=len(self.dataset)),
                pipeline=dataset_cfg.get('pipeline'),
                model=runner.cfg.model,
                checkpoint=dict(
                    path=checkpoint, sha256=checkpoint_sha256(checkpoint)),
                gate_input=model.gate_input_info,
                gate_input_levels=model.gate_input_levels,
                ground_truth=self.evaluator.ground_truth,
                code_version=_code_version(),
                config=config.pretty_text))
        super().__init__(runner, dataloader=None)

    def _load_part(self, path: str) -> ExitDataset:
        """Load an earlier result, checking that it can be merged."""
        part = load_exit_dataset(path)
        stored, current = _identity(part.meta), _identity(self.meta)
        if stored != current:
            differing = sorted(
                key for key in set(stored) | set(current)
                if stored.get(key) != current.get(key))
            raise ValueError(
                f'--resume: {path} was derived with different {differing} '
                'than this run; rerun without --resume (or delete it)')
        return part

    def _earlier_results(self) -> List[ExitDataset]:
        """The results of earlier runs that this run keeps (rank 0 only)."""
        if not self.resume:
            return []
        paths = sorted(glob.glob(osp.join(self.parts_dir, '*.npz')))
        if osp.isfile(self.out_file):
            paths.append(self.out_file)
        return [self._load_part(path) for path in paths]

    def _plan(self) -> tuple:
        """Agree on a run id and the images still to derive (all ranks)."""
        rank, world_size = get_dist_info()
        plan: List[Any] = [None]
        if rank == 0:
            try:
                done = np.concatenate(
                    [part.image_ids for part in self._earlier_results()] +
                    [np.zeros(0, np.int64)])
            except ValueError as error:
                # every rank raises it, none waits for a plan
                plan = [error]
            else:
                pending = np.flatnonzero(
                    ~np.isin(self.image_ids, done)).tolist()
                plan = [(uuid.uuid4().hex[:12], pending)]
                if not self.resume and osp.isdir(self.parts_dir):
                    print_log(
                        f'discarding the partial results in {self.parts_dir}'
                        ' (pass --resume to continue them)',
                        logger='current')
                    shutil.rmtree(self.parts_dir)
                os.makedirs(self.parts_dir, exist_ok=True)
        if world_size > 1:
            broadcast_object_list(plan, src=0)
            barrier()
        if isinstance(plan[0], Exception):
            raise plan[0]
        run_id, pending = plan[0]
        return run_id, pending, pending[rank::world_size]

    def _save_chunk(self, rows: List[dict], run_id: str, rank: int,
                    chunk: int) -> None:
        """Write the rows derived since the last chunk to a new file."""
        name = f'{run_id}-rank{rank:03d}-{chunk:06d}.npz'
        ExitDataset(
            image_ids=[row['image_id'] for row in rows],
            exits=self.exits,
            gate_inputs=np.stack([row['gate_input'] for row in rows]),
            layer1_gate_inputs=np.stack(
                [row['layer1_gate_input'] for row in rows])
            if 'layer1_gate_input' in rows[0] else None,
            meta=self.meta,
            **{
                name: np.stack([row[name] for row in rows])
                for name in self.evaluator.metrics
            }).save(osp.join(self.parts_dir, name))

    def _merge(self) -> ExitDataset:
        """Merge every chunk and earlier result into ``out_file``."""
        parts = [
            self._load_part(path)
            for path in sorted(glob.glob(osp.join(self.parts_dir, '*.npz')))
        ]
        if self.resume and osp.isfile(self.out_file):
            parts.append(self._load_part(self.out_file))
        merged = ExitDataset.concatenate(parts, self.meta)
        if not np.array_equal(merged.image_ids, np.sort(self.image_ids)):
            missing = np.setdiff1d(self.image_ids, merged.image_ids)
            raise RuntimeError(
                f'the results in {self.parts_dir} do not cover the split: '
                f'{len(missing)} images missing, e.g. {missing[:5].tolist()}')
        merged.save(self.out_file)
        shutil.rmtree(self.parts_dir)
        return merged

    def run(self) -> Dict[str, float]:
        """Derive every remaining image and write ``out_file``.

        Returns:
            dict[str, float]: ``'exit{k}/{metric}'``: the mean per-image
            quality (the first metric and group: All-PQ, or box AP) of exit
            k over the split (NaN entries skipped), on rank 0; empty on the
            other ranks.
        """
        rank, world_size = get_dist_info()
        run_id, pending, indices = self._plan()
        self.dataloader = DataLoader(
            Subset(self.dataset, indices),
            batch_size=1,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=pseudo_collate)
        print_log(
            f'deriving exits {self.exits} of {len(pending)} of '
            f'{len(self.image_ids)} images on {world_size} rank(s) '
            f'-> {self.out_file}',
            logger='current')
        self.runner.model.eval()
        progress = ProgressBar(len(indices)) if rank == 0 and indices else None
        rows: List[dict] = []
        chunk = 0
        model = unwrap_model(self.runner.model)
        for index, data_batch in zip(indices, self.dataloader):
            rows.append(
                derive_image(model, data_batch, self.exits, self.evaluator,
                             int(self.image_ids[index])))
            if len(rows) == self.save_interval:
                self._save_chunk(rows, run_id, rank, chunk)
                rows, chunk = [], chunk + 1
            if progress is not None:
                progress.update()
        if progress is not None:
            progress.file.write('\n')
        if rows:
            self._save_chunk(rows, run_id, rank, chunk)
        if world_size > 1:
            barrier()
        metrics: Dict[str, float] = {}
        if rank == 0:
            merged = self._merge()
            metric, group = merged.metrics[0], merged.groups[0]
            means = np.nanmean(merged.quality(metric, group), axis=0)
            metrics = {
                f'exit{k}/{metric}': float(v)
                for k, v in zip(self.exits, means)
            }
            print_log(
                f'wrote {self.out_file}: {len(merged)} images; mean per-image'
                f' {metric} ({group}) per exit: ' +
                ', '.join(f'{k}: {100 * v:.2f}'
                          for k, v in zip(self.exits, means)),
                logger='current')
        if world_size > 1:
            barrier()
        return metrics
