"""Model registry: architectures register by name; ``create`` builds them with keyword args."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from eochange.errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[F], F]:
    """Class or function decorator registering a model builder under ``name``."""

    def decorator(builder: F) -> F:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    _load_all()
    return sorted(_MODELS)


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; its defaults are the published configuration.

    Raises:
        ConfigError: Unknown name.
    """
    _load_all()
    if name not in _MODELS:
        raise ConfigError(f"model: unknown name {name!r}; registered: {', '.join(sorted(_MODELS))}")
    return _MODELS[name](**kwargs)


def _load_all() -> None:
    # Importing the architecture modules registers them.
    from eochange.models import (  # noqa: F401
        convlstm,
        deeplabv3plus,
        densenet,
        ercnn_drs,
        resnet,
        unet,
        unet3d,
        unet_dfc2020,
        utae,
    )
