"""Weight initialisation schemes for training from scratch.

``upstream`` reproduces ``net.apply(weight_init)`` of ``aysim/dynnet``, which the
published DynamicEarthNet baselines were trained with:

============================================  ===============  ==========
module                                        weight           bias
============================================  ===============  ==========
Conv2d/3d, ConvTranspose2d/3d, Linear         Xavier-normal    N(0, 1)
Conv1d (the L-TAE input convolution)          N(0, 1)          N(0, 1)
BatchNorm1d/2d/3d                             N(0, 1)          0
GroupNorm, LayerNorm                          untouched (1)    untouched (0)
============================================  ===============  ==========

BatchNorm scales drawn from N(0, 1) (some negative) are an upstream quirk kept for
from-scratch parity; ``default`` leaves PyTorch's own initialisation (BatchNorm 1/0),
the usual fix. Free parameters such as the L-TAE master query keep their own init.
"""

from __future__ import annotations

from torch import nn

from eochange.errors import ConfigError

WEIGHT_INITS = ("upstream", "default")

_XAVIER = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _upstream(module: nn.Module) -> None:
    if isinstance(module, _XAVIER):
        nn.init.xavier_normal_(module.weight)
        if module.bias is not None:
            nn.init.normal_(module.bias)
    elif isinstance(module, nn.Conv1d):
        nn.init.normal_(module.weight)
        if module.bias is not None:
            nn.init.normal_(module.bias)
    elif isinstance(module, _BATCHNORM) and module.affine:
        nn.init.normal_(module.weight)
        nn.init.zeros_(module.bias)


def initialise(model: nn.Module, scheme: str = "upstream") -> nn.Module:
    """Re-initialise ``model`` in place with ``scheme`` (see the module docstring).

    Raises:
        ConfigError: Unknown scheme.
    """
    if scheme not in WEIGHT_INITS:
        raise ConfigError(f"weight_init: expected one of {WEIGHT_INITS}, got {scheme!r}")
    if scheme == "upstream":
        model.apply(_upstream)
    return model
