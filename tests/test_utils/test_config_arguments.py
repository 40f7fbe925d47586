# Copyright (c) The proscale Authors. All rights reserved.
from mmdet.datasets import CocoPanopticDataset
from mmengine.dataset import DefaultSampler

from proscale.utils.config_arguments import (accepted_arguments,
                                             init_arguments, resolve_type)


def test_resolve_type_through_the_registries():
    assert resolve_type('CocoPanopticDataset', 'mmdet') is CocoPanopticDataset
    assert resolve_type('DefaultSampler', 'mmdet') is DefaultSampler
    assert resolve_type('NoSuchThing', 'mmdet') is None
    assert resolve_type(DefaultSampler, 'mmdet') is DefaultSampler


def test_init_arguments_follow_kwargs_to_the_bases():
    # CocoPanopticDataset(*args, **kwargs) -> ... -> BaseDataset(indices=...)
    arguments = init_arguments(CocoPanopticDataset)
    assert {'indices', 'ann_file', 'backend_args', 'serialize_data'
            } <= arguments
    assert 'self' not in arguments and 'kwargs' not in arguments


def test_accepted_arguments_need_a_known_type():
    assert 'round_up' in accepted_arguments(
        dict(type='DefaultSampler'), 'mmdet')
    assert accepted_arguments(dict(shuffle=True), 'mmdet') is None
    assert accepted_arguments(dict(type='NoSuchThing'), 'mmdet') is None
    assert accepted_arguments([dict(type='DefaultSampler')], 'mmdet') is None
