# Copyright (c) The proscale Authors. All rights reserved.
"""The arguments a config dict's ``type`` accepts, through the registries.

``--cfg-options`` may add a key that the config does not set yet when the
class the dict builds takes it as an argument (e.g.
``train_dataloader.dataset.indices=8``: ``BaseDataset.__init__`` takes
``indices``). :func:`accepted_arguments` resolves the class from the dict's
``type`` in mmengine's registries (under the config's default scope, as the
runner builds it) and collects the argument names of its ``__init__``.
"""
import inspect
from typing import Any, Callable, Optional, Set

from mmengine.registry import (DATA_SAMPLERS, DATASETS, EVALUATOR, HOOKS,
                               LOG_PROCESSORS, LOOPS, METRICS, MODELS,
                               OPTIM_WRAPPERS, OPTIMIZERS, PARAM_SCHEDULERS,
                               TASK_UTILS, TRANSFORMS, VISBACKENDS,
                               VISUALIZERS, Registry)

# Searched in this order; the first registry that knows the type wins.
_REGISTRIES = (DATASETS, DATA_SAMPLERS, TRANSFORMS, MODELS, TASK_UTILS,
               LOOPS, HOOKS, METRICS, EVALUATOR, OPTIM_WRAPPERS, OPTIMIZERS,
               PARAM_SCHEDULERS, VISUALIZERS, VISBACKENDS, LOG_PROCESSORS)
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD,
          inspect.Parameter.KEYWORD_ONLY)


def _lookup(registry: Registry, name: str, scope: str) -> Optional[Callable]:
    """``registry.get(name)`` under ``scope``; None if it is unknown."""
    with registry.switch_scope_and_registry(scope) as scoped:
        try:
            return scoped.get(name)
        except KeyError:
            return None


def resolve_type(type_: Any, scope: str) -> Optional[Callable]:
    """Return the class (or function) a config's ``type`` names.

    Args:
        type_ (str | type | Callable): The ``type`` entry, e.g.
            ``'CocoPanopticDataset'`` or ``'mmdet.ProScalePixelDecoder'``.
        scope (str): The config's default scope (e.g. ``'mmdet'``).

    Returns:
        Callable or None: What the type names, or None if no registry
        knows it.
    """
    if callable(type_):
        return type_
    if not isinstance(type_, str):
        return None
    for registry in _REGISTRIES:
        target = _lookup(registry, type_, scope)
        if target is not None:
            return target
    return None


def init_arguments(target: Callable) -> Set[str]:
    """Return the keyword arguments a class (or function) accepts.

    ``**kwargs`` of a class's ``__init__`` are followed to the base
    classes' ``__init__`` (the usual ``super().__init__(**kwargs)``).

    Args:
        target (Callable): A class or function.

    Returns:
        set[str]: The argument names (without ``self``).
    """
    if not inspect.isclass(target):
        return {
            name
            for name, param in inspect.signature(target).parameters.items()
            if param.kind in _NAMED
        }
    names: Set[str] = set()
    for klass in target.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters
        names |= {
            name
            for name, param in params.items()
            if param.kind in _NAMED and name != 'self'
        }
        if not any(param.kind == inspect.Parameter.VAR_KEYWORD
                   for param in params.values()):
            break
    return names


def accepted_arguments(node: Any, scope: str) -> Optional[Set[str]]:
    """The arguments the class a config dict builds accepts.

    Args:
        node (Any): A config node; only dicts with a ``type`` count.
        scope (str): The config's default scope.

    Returns:
        set[str] or None: The argument names, or None if ``node`` is not a
        dict whose ``type`` a registry knows.
    """
    if not isinstance(node, dict) or 'type' not in node:
        return None
    target = resolve_type(node['type'], scope)
    return None if target is None else init_arguments(target)
