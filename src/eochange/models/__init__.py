"""Models: a registry (``create``, ``list_models``) and one file per architecture.

Temporal models follow ``forward(x: (B, T, C, H, W), dates: (B, T) | None) -> (B, K, H, W)``.
``from_dynamicearthnet(arch, checkpoint)`` loads the official DynamicEarthNet weights;
``from_sen12ms(arch, checkpoint)`` the SEN12MS toolbox scene classifiers (ResNet, DenseNet)
and ``from_dfc2020(checkpoint)`` the DFC2020 baseline segmentation models;
``from_keras_ercnn(h5_path)`` the ERCNN-DRS Keras HDF5 weights (``ercnn_drs`` takes
``forward(x, valid: (B, T) | None) -> (B, H, W)`` change probabilities).
"""

from eochange.models.registry import create, list_models, register_model
from eochange.models.upstream.dynamicearthnet import from_dynamicearthnet
from eochange.models.upstream.ercnn_drs import from_keras_ercnn
from eochange.models.upstream.sen12ms import from_dfc2020, from_sen12ms

__all__ = [
    "create",
    "from_dfc2020",
    "from_dynamicearthnet",
    "from_keras_ercnn",
    "from_sen12ms",
    "list_models",
    "register_model",
]
