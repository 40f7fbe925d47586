# Copyright (c) The proscale Authors. All rights reserved.
from . import metrics  # noqa: F401
from .exit_dataset import ExitDataset, load_exit_dataset  # noqa: F401
from .exit_quality import (EXIT_QUALITY, BoxExitQuality,  # noqa: F401
                           ExitQualityEvaluator, PanopticExitQuality,
                           build_exit_quality)
from .single_image_box_ap import (single_image_box_ap,  # noqa: F401
                                  single_image_box_stats)
from .single_image_panoptic_evaluator import (  # noqa: F401
    SingleImagePanopticEvaluator, prediction_to_coco_panoptic)
from .single_image_pq import (PanopticStats, pq_average,  # noqa: F401
                              single_image_pq, single_image_pq_stats)
