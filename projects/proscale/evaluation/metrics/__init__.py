from .cityscapes_panoptic_metric import CityscapesPanopticMetric  # noqa: F401
