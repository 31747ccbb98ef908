"""DeepLabv3+ (Chen et al., ECCV 2018) as configured by the DFC2020 baseline.

A dilated ResNet backbone (:class:`~eochange.models.resnet.ResNet`, output stride 16
or 8, multi-grid ``(1, 2, 4)`` last stage), an ASPP head and a light decoder that fuses
the stride-4 ``layer1`` features:

- ASPP: four 256-channel branches (1x1, and 3x3 with dilations 6/12/18 at output
  stride 16, 12/24/36 at 8) plus image pooling; concatenated (1280) -> 1x1 256, BN,
  ReLU, Dropout(0.5);
- decoder: ``layer1`` (256) -> 1x1 48, BN, ReLU; the ASPP map upsampled to it and
  concatenated first (304) -> 3x3 256, BN, ReLU, Dropout(0.5) -> 3x3 256, BN, ReLU,
  Dropout(0.1) -> 1x1 ``num_classes``; bilinear (``align_corners=True``) up to the input.

Keys match the baseline checkpoints (``backbone.*``, ``aspp.*``, ``decoder.*``; 680
entries with ResNet-101). With 12 bands and 10 classes: 59,369,706 parameters, of which
42,528,384 in the backbone (1x learning rate) and 16,841,322 in the head (10x).

The same network is the one of the semi-supervised CAC baseline (Lai et al., CVPR 2021;
``tasks/semisupervised.py``), whose options are off by default: ``projection_dim`` adds
the contrastive projection head (``projection.*``: 1x1 256->256 with bias, ReLU, 1x1
256->``projection_dim`` with bias, no BatchNorm, PyTorch's default init), ``head_init=
"fan_in"`` CAC's Kaiming fan-in init of the ASPP, decoder and classifier, and
``stem_weights="rgb"`` a first convolution built from the RGB filters of ImageNet
weights for more than three bands.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from eochange.errors import ConfigError, DataError
from eochange.models.registry import register_model
from eochange.models.resnet import ResNet, single_date
from eochange.models.upstream.common import mismatch, read_checkpoint, shapes, state_dict_of

BACKBONES = {"resnet50": 50, "resnet101": 101}
ASPP_DILATIONS = {16: (6, 12, 18), 8: (12, 24, 36)}
"""Dilations of the three 3x3 ASPP branches per output stride."""
MULTI_GRID = (1, 2, 4)
"""Factors of the ``layer4`` dilation, block by block."""
HEAD_INITS = ("fan_out", "fan_in")
"""Kaiming-normal modes of the ASPP/decoder/classifier init: DFC2020 baseline, CAC."""
STEM_WEIGHTS = ("init", "rgb")
"""What ``conv1`` gets when backbone weights are loaded (see :class:`DeepLabV3Plus`)."""
PROJECTION_HIDDEN = 256
"""Width of the projection head's hidden layer (CAC's ``out_dim``)."""


class ASPPBranch(nn.Module):
    """Conv (1x1, or dilated 3x3), BN, ReLU (keys ``atrous_conv``, ``bn``).

    Args:
        d_in: Input channels.
        d_out: Output channels.
        kernel_size: 1 or 3.
        dilation: Dilation of a 3x3 kernel (padding keeps the size).
    """

    def __init__(self, d_in: int, d_out: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        padding = 0 if kernel_size == 1 else dilation
        self.atrous_conv = nn.Conv2d(
            d_in, d_out, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(d_out)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_in, H, W) -> (B, d_out, H, W)``."""
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 4 conv branches and image pooling, fused to 256.

    Args:
        d_in: Backbone channels (2048).
        dilations: Dilations of the three 3x3 branches.
        d_out: Channels of each branch and of the output.
    """

    def __init__(self, d_in: int, dilations: Sequence[int], d_out: int = 256) -> None:
        super().__init__()
        self.aspp1 = ASPPBranch(d_in, d_out, 1, 1)
        self.aspp2 = ASPPBranch(d_in, d_out, 3, dilations[0])
        self.aspp3 = ASPPBranch(d_in, d_out, 3, dilations[1])
        self.aspp4 = ASPPBranch(d_in, d_out, 3, dilations[2])
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(d_in, d_out, 1, bias=False),
            nn.BatchNorm2d(d_out),
            nn.ReLU(inplace=True),
        )
        self.conv1 = nn.Conv2d(5 * d_out, d_out, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(d_out)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_in, h, w) -> (B, d_out, h, w)``."""
        pooled = F.interpolate(
            self.global_avg_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=True
        )
        branches = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled]
        return self.dropout(self.relu(self.bn1(self.conv1(torch.cat(branches, 1)))))


class Decoder(nn.Module):
    """Fuse the ASPP map with the low-level features; classify at stride 4.

    Args:
        num_classes: Output classes.
        d_low: Channels of the low-level (``layer1``) features.
        d_aspp: Channels of the ASPP output.
    """

    def __init__(self, num_classes: int, d_low: int = 256, d_aspp: int = 256) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(d_low, 48, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(48)
        self.relu = nn.ReLU(inplace=True)
        self.last_conv = nn.Sequential(
            nn.Conv2d(d_aspp + 48, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(256, num_classes, 1),
        )

    def encode(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        """ASPP ``(B, d_aspp, h, w)`` and ``(B, d_low, H/4, W/4)`` -> ``(B, 256, H/4, W/4)``.

        The decoder's last ReLU output, before the classifier's Dropout(0.1) (CAC's
        "encoder output").
        """
        low_level = self.relu(self.bn1(self.conv1(low_level)))
        x = F.interpolate(x, size=low_level.shape[-2:], mode="bilinear", align_corners=True)
        return self.last_conv[:-2](torch.cat([x, low_level], 1))

    def features(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        """As :meth:`encode`, then the classifier's Dropout(0.1) (active in training).

        The map the final 1x1 classifier sees.
        """
        return self.last_conv[-2](self.encode(x, low_level))

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        """As :meth:`features`, then the 1x1 classifier: ``(B, num_classes, H/4, W/4)``."""
        return self.last_conv[-1](self.features(x, low_level))


@register_model("deeplabv3plus")
class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ with the DFC2020 baseline configuration as defaults.

    Args:
        in_channels: Input bands (12: S2 high/mid-res then S1; 10: S2 only).
        num_classes: Output classes (10 DFC2020 classes; 9 without Savanna).
        backbone: ``resnet101`` (the baseline) or ``resnet50``.
        output_stride: 16 or 8 (the parameter count is the same).
        backbone_weights: Path of a torchvision-format ResNet state_dict (``.pth``, e.g.
            ImageNet ``resnet101-5d3b4d8f.pth``) loaded into the backbone, except the
            stem ``conv1.weight`` (sized for other bands; see ``stem_weights``) and
            ``fc.*``; None: random init.
        projection_dim: Output channels of the contrastive projection head (CAC: 128);
            None (default): no head.
        head_init: ``fan_out`` (default, DFC2020 baseline: every conv N(0, sqrt(2 / (k *
            k * out_channels)))) or ``fan_in`` (CAC: Kaiming-normal fan-in for the ASPP,
            decoder and classifier; the backbone keeps fan-out).
        stem_weights: With ``backbone_weights``: ``init`` keeps ``conv1`` as initialised
            (DFC2020 baseline); ``rgb`` builds it from the file's RGB filters, taking the
            first three input bands as R, G, B: bands 0-2 get the R, G, B filters, every
            further band their mean, and all are scaled by ``3 / in_channels`` so that
            the first activations keep their scale.

    Convolutions are initialised N(0, sqrt(2 / (k * k * out_channels))), BatchNorm 1/0.
    ``forward(x, dates=None)`` maps ``(B, in_channels, H, W)`` or ``(B, 1, in_channels,
    H, W)`` to logits ``(B, num_classes, H, W)``; ``dates`` is ignored.
    """

    def __init__(
        self,
        in_channels: int = 12,
        num_classes: int = 10,
        backbone: str = "resnet101",
        output_stride: int = 16,
        backbone_weights: str | os.PathLike[str] | None = None,
        projection_dim: int | None = None,
        head_init: str = "fan_out",
        stem_weights: str = "init",
    ) -> None:
        super().__init__()
        _check_choice("head_init", head_init, HEAD_INITS)
        _check_choice("stem_weights", stem_weights, STEM_WEIGHTS)
        if stem_weights == "rgb" and in_channels < 3:
            raise ConfigError(f"stem_weights 'rgb' needs at least 3 bands, got {in_channels}")
        if projection_dim is not None and projection_dim < 1:
            raise ConfigError(f"projection_dim: expected a positive width, got {projection_dim}")
        if backbone not in BACKBONES:
            raise ConfigError(f"backbone: expected one of {tuple(BACKBONES)}, got {backbone!r}")
        if output_stride not in ASPP_DILATIONS:
            raise ConfigError(
                f"output_stride: expected one of {tuple(ASPP_DILATIONS)}, got {output_stride!r}"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.stem_weights = stem_weights
        self.backbone = ResNet(
            BACKBONES[backbone], in_channels, output_stride=output_stride, multi_grid=MULTI_GRID
        )
        self.aspp = ASPP(self.backbone.out_channels, ASPP_DILATIONS[output_stride])
        self.decoder = Decoder(num_classes)
        in_backbone = {id(module) for module in self.backbone.modules()}
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                mode = "fan_out" if id(module) in in_backbone else head_init
                nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.projection: nn.Sequential | None = None
        if projection_dim is not None:  # built last: PyTorch's default init, as CAC
            self.projection = nn.Sequential(
                nn.Conv2d(PROJECTION_HIDDEN, PROJECTION_HIDDEN, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(PROJECTION_HIDDEN, projection_dim, 1),
            )
        if backbone_weights is not None:
            self.load_backbone(backbone_weights)

    def load_backbone(self, path: str | os.PathLike[str]) -> None:
        """Load a torchvision-format ResNet state_dict into the backbone.

        All keys but ``conv1.weight`` and ``fc.*`` must match the backbone's names and
        shapes; ``conv1.weight`` is kept from the initialisation or, with
        ``stem_weights="rgb"``, built from the file's RGB filters (see the class).

        Raises:
            DataError: Unreadable or unsafe file, or keys/shapes that do not match (listed,
                with the file name).
        """
        content, source = read_checkpoint(path)
        state = state_dict_of(content, "state_dict", source)
        rgb = state.get("conv1.weight")
        state = {k: v for k, v in state.items() if k != "conv1.weight" and not k.startswith("fc.")}
        expected = shapes(self.backbone.state_dict())
        stem_shape = expected.pop("conv1.weight")
        problems = mismatch(expected, shapes(state))
        if self.stem_weights == "rgb" and (rgb is None or tuple(rgb.shape[:2]) != (64, 3)):
            found = None if rgb is None else tuple(rgb.shape)
            problems = f"{problems}; " if problems else ""
            problems += f"conv1.weight: expected RGB filters (64, 3, 7, 7), found {found}"
        if problems:
            raise DataError(
                f"{source}: not a torchvision-format ResNet-{self.backbone.depth} state_dict "
                f"for the backbone: {problems}"
            )
        if self.stem_weights == "rgb":
            state["conv1.weight"] = stem_from_rgb(rgb, stem_shape[1])
        self.backbone.load_state_dict(state, strict=False)

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(backbone, head)`` parameters: the baseline trains them at 1x and 10x the lr.

        The head is the ASPP, the decoder with the classifier, and the projection head.
        """
        projection = [] if self.projection is None else list(self.projection.parameters())
        return list(self.backbone.parameters()), [
            *self.aspp.parameters(),
            *self.decoder.parameters(),
            *projection,
        ]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, [1,] in_channels, H, W) -> (B, 256, H/4, W/4)``: the decoder's last map.

        Before the classifier's Dropout(0.1): CAC's "encoder output", which it pools and
        feeds to both :meth:`project` and :meth:`logits`.
        """
        x = single_date("deeplabv3plus", x, self.in_channels)
        stages = self.backbone.forward_stages(x)
        return self.decoder.encode(self.aspp(stages[3]), stages[0])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`encode`, then the classifier's Dropout(0.1) (active in training).

        What the final 1x1 classifier sees (for feature-level losses);
        ``classify(features(x), x.shape[-2:])`` equals ``forward(x)``.
        """
        return self.decoder.last_conv[-2](self.encode(x))

    def logits(self, encoded: torch.Tensor) -> torch.Tensor:
        """Encoded map ``(B, 256, h, w)`` -> logits ``(B, num_classes, h, w)``, no resizing.

        Dropout(0.1) and the 1x1 classifier, so ``classify(features(x), size)`` equals
        ``resize(logits(encode(x)), size)`` (CAC's pseudo-labels come from this at stride 8).
        """
        return self.decoder.last_conv[-1](self.decoder.last_conv[-2](encoded))

    def project(self, encoded: torch.Tensor) -> torch.Tensor:
        """Encoded map ``(B, 256, h, w)`` -> ``(B, projection_dim, h, w)``, unit length.

        The projection head, then L2 normalisation over channels.

        Raises:
            ConfigError: The model was built without ``projection_dim``.
        """
        if self.projection is None:
            raise ConfigError("deeplabv3plus: built without projection_dim, so it cannot project")
        return F.normalize(self.projection(encoded), dim=1)

    def classify(self, features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Decoder map ``(B, 256, h, w)`` -> logits ``(B, num_classes, *size)``."""
        logits = self.decoder.last_conv[-1](features)
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor, dates: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, [1,] in_channels, H, W) -> (B, num_classes, H, W)`` logits."""
        return self.classify(self.features(x), x.shape[-2:])


def stem_from_rgb(rgb: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A first-convolution weight for ``in_channels`` bands from RGB filters.

    Bands 0-2 get the R, G, B filters, every further band (e.g. NIR) their mean; all are
    scaled by ``3 / in_channels`` so that an input whose bands look alike gives the
    activations the RGB filters gave.

    Args:
        rgb: ``(64, 3, k, k)`` filters in R, G, B order (torchvision's ImageNet weights).
        in_channels: Bands of the new convolution (>= 3).
    """
    extra = rgb.mean(dim=1, keepdim=True).expand(-1, in_channels - 3, -1, -1)
    return torch.cat([rgb, extra], dim=1) * (3.0 / in_channels)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {tuple(choices)}, got {value!r}")
