"""Zoo builders: seven small PyTorch architectures covering what edge models are made of.

Every builder seeds torch before creating its layers, so the same call gives the same weights
on every machine (that is what the committed ``models/zoo/<name>.onnx`` files are), and returns
a module whose ``example_inputs`` attribute holds a tuple of example tensors, which
``irpass lower models/zoo.py:<name>`` uses.

=================  ==========================  ===============================================
name               input                       what it exercises
=================  ==========================  ===============================================
resnet_cnn         image [N, 1, 16, 16]        Conv+BN+ReLU, residual Add, 1x1 projection
                                               shortcut, global average pool, Gemm
mobilenet_v2       image [N, 1, 16, 16]        inverted residuals, depthwise Conv (group=C),
                                               ReLU6 (Clip), linear bottlenecks
power_cnn1d        trace [N, 1, 512]           five Conv1d+ReLU+MaxPool blocks, two FC layers,
                                               Softmax (NILM appliance classifier)
mlp                vector [N, 64]              Gemm/MatMul+ReLU stack
transformer        tokens int64 [N, T]         Embedding (Gather), multi-head attention,
                                               LayerNorm, GELU, FFN, dynamic sequence length
unet               image [N, 1, 16, 16]        encoder/decoder, Resize (upsample), Concat
                                               skips, Split
patch_transformer  vector [N, 64]              the transformer over 8 tokens of 8 features
                                               (linear patch embedding, batched MatMuls)
mobilenet_v3       image [N, 1, 16, 16]        HardSwish, squeeze-excite with HardSigmoid,
                                               5x5 depthwise convs (ops NNAPI lacks)
=================  ==========================  ===============================================

This module needs torch (``pip install irpass[torch]``); code that must run without torch uses
the committed ONNX files through :func:`models.zoo_paths`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ZOO",
    "ZooEntry",
    "build",
    "mlp",
    "mobilenet_v2",
    "mobilenet_v3",
    "patch_transformer",
    "power_cnn1d",
    "resnet_cnn",
    "transformer",
    "unet",
]

DIGITS_SHAPE = (1, 1, 16, 16)
TRACE_LENGTH = 512


# --------------------------------------------------------------------------- ResNet-style CNN
class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNetCNN(nn.Module):
    """A small ResNet: stem conv, three stages of two basic blocks, pooling, classifier."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        chans = [width, width * 2, width * 4]
        blocks: list[nn.Module] = []
        cin = width
        for i, cout in enumerate(chans):
            stride = 1 if i == 0 else 2
            blocks += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


# ------------------------------------------------------------------------- MobileNetV2-style
class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2 in miniature: inverted residual blocks with depthwise convs and ReLU6."""

    # (expansion, out channels, repeats, first stride), as in the paper's table 2, scaled down.
    SETTINGS = ((1, 8, 1, 1), (4, 16, 2, 2), (4, 24, 2, 1), (4, 32, 2, 2))

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        stem = 16
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU6(),
        ]
        cin = stem
        for expand, cout, repeats, stride in self.SETTINGS:
            for i in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        last = 128
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# ------------------------------------------------------------------------- MobileNetV3-style
class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))
        return x * F.hardsigmoid(self.expand(scale))


class _V3Block(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int, se: bool,
                 act: type[nn.Module]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden != cin:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act()]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            act(),
        ]
        self.expand = nn.Sequential(*layers)
        self.se: nn.Module = _SqueezeExcite(hidden, max(8, hidden // 4)) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.expand(x)))
        return x + y if self.use_residual else y


class MobileNetV3(nn.Module):
    """MobileNetV3-Small in miniature: HardSwish, squeeze-excite gates (HardSigmoid), 5x5 DW."""

    # (kernel, hidden, out, squeeze-excite, HardSwish?, stride), as the paper's table 2, scaled
    SETTINGS = (
        (3, 16, 16, True, False, 2),
        (3, 48, 24, False, False, 1),
        (3, 64, 24, False, False, 1),
        (5, 72, 32, True, True, 2),
        (5, 96, 32, True, True, 1),
        (5, 96, 48, True, True, 1),
    )

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        stem = 16
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem),
            nn.Hardswish(),
        ]
        cin = stem
        for kernel, hidden, cout, se, hswish, stride in self.SETTINGS:
            act = nn.Hardswish if hswish else nn.ReLU
            layers.append(_V3Block(cin, hidden, cout, kernel, stride, se, act))
            cin = cout
        last = 96
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(last, 128), nn.Hardswish(), nn.Dropout(0.1), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# --------------------------------------------------------------------------------- 1D CNN
class PowerCNN1D(nn.Module):
    """Appliance classifier for power traces (NILM): 5x (Conv1d, ReLU, MaxPool), 2 FC, Softmax.

    Returns class probabilities, as the deployed models in load-monitoring case studies do;
    :meth:`logits` is what training uses.
    """

    def __init__(
        self, num_classes: int = 6, length: int = TRACE_LENGTH, channels: tuple[int, ...] = (
            8, 16, 32, 32, 64)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for cout in channels:
            layers += [nn.Conv1d(cin, cout, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        flat = cin * (length // 2 ** len(channels))
        self.fc1 = nn.Linear(flat, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores before the softmax."""
        x = torch.flatten(self.features(x), 1)
        return self.fc2(F.relu(self.fc1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


# ------------------------------------------------------------------------------------ MLP
class MLP(nn.Module):
    """A plain multi-layer perceptron on flattened 8x8 digits."""

    def __init__(self, in_features: int = 64, hidden: tuple[int, ...] = (128, 64),
                 num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_features
        for h in hidden:
            layers += [nn.Linear(cin, h), nn.ReLU()]
            cin = h
        layers.append(nn.Linear(cin, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---------------------------------------------------------------------------- transformer
class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).reshape(n, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * (d // h) ** -0.5
        out = torch.softmax(scores, dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class _EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class TransformerEncoder(nn.Module):
    """Pre-norm transformer encoder classifier over token ids (any sequence length <= max_len)."""

    def __init__(self, vocab: int = 128, dim: int = 64, heads: int = 4, layers: int = 2,
                 ffn: int = 128, max_len: int = 64, num_classes: int = 4,
                 patch: int | None = None) -> None:
        super().__init__()
        # With ``patch`` the input is a float vector cut into tokens of ``patch`` features each
        # (a ViT-style linear patch embedding) instead of token ids.
        self.patch = patch
        self.embed: nn.Module = nn.Embedding(vocab, dim) if patch is None else nn.Linear(patch, dim)
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.layers = nn.Sequential(*[_EncoderLayer(dim, heads, ffn) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.patch is not None:
            tokens = tokens.reshape(tokens.shape[0], -1, self.patch)
        x = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        x = self.norm(self.layers(x))
        return self.head(x.mean(dim=1))


# ----------------------------------------------------------------------------------- U-Net
class _DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UNet(nn.Module):
    """Two-level U-Net: MaxPool down, Resize (nearest and bilinear) up, Concat skips, Split.

    The bottleneck output is split in two channel halves (ONNX Split) that are upsampled
    differently and concatenated again, so Split, Resize and Concat all appear.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        self.enc1 = _DoubleConv(in_channels, width)
        self.enc2 = _DoubleConv(width, width * 2)
        self.bottleneck = _DoubleConv(width * 2, width * 4)
        self.dec2 = _DoubleConv(width * 4 + width * 2, width * 2)
        self.dec1 = _DoubleConv(width * 2 + width, width)
        self.out = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottleneck(F.max_pool2d(e2, 2))
        left, right = torch.split(b, b.shape[1] // 2, dim=1)
        up = torch.cat(
            [
                F.interpolate(left, scale_factor=2.0, mode="nearest"),
                F.interpolate(right, scale_factor=2.0, mode="bilinear", align_corners=False),
            ],
            dim=1,
        )
        d2 = self.dec2(torch.cat([up, e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1], 1))
        return self.out(d1)


# -------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ZooEntry:
    """How to build and lower one zoo architecture."""

    name: str
    cls: Callable[..., nn.Module]
    example: Callable[[], tuple[torch.Tensor, ...]]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    #: Extra dynamic axes beyond the batch: ``{input_index: {axis: dim_name}}``.
    dynamic_axes: dict[int, dict[int, str]] = field(default_factory=dict)
    doc: str = ""


def _patch_transformer(**kwargs: Any) -> nn.Module:
    # The zoo transformer with a linear patch embedding: a flattened 8x8 digit is 8 tokens
    # (rows) of 8 pixels; a wider FFN than the token model, 10 classes.
    return TransformerEncoder(**{"patch": 8, "ffn": 256, "num_classes": 10, **kwargs})


def _image() -> tuple[torch.Tensor, ...]:
    return (torch.randn(*DIGITS_SHAPE, generator=torch.Generator().manual_seed(0)),)


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry("resnet_cnn", ResNetCNN, _image, ("input",), ("logits",),
                 doc="ResNet-style CNN with residual adds (digits 16x16, 10 classes)"),
        ZooEntry("mobilenet_v2", MobileNetV2, _image, ("input",), ("logits",),
                 doc="MobileNetV2-style net: inverted residuals, depthwise convs, ReLU6"),
        ZooEntry("power_cnn1d", PowerCNN1D,
                 lambda: (torch.randn(1, 1, TRACE_LENGTH,
                                      generator=torch.Generator().manual_seed(0)),),
                 ("trace",), ("probs",),
                 doc="1D-CNN for appliance power traces: 5x Conv1d+MaxPool, 2 FC, softmax"),
        ZooEntry("mlp", MLP,
                 lambda: (torch.randn(1, 64, generator=torch.Generator().manual_seed(0)),),
                 ("input",), ("logits",), doc="MLP on flattened 8x8 digits"),
        ZooEntry("transformer", TransformerEncoder,
                 lambda: (torch.randint(0, 128, (2, 16),
                                        generator=torch.Generator().manual_seed(0)),),
                 ("tokens",), ("logits",), dynamic_axes={0: {1: "sequence"}},
                 doc="transformer encoder: attention, LayerNorm, GELU, FFN; dynamic sequence"),
        ZooEntry("unet", UNet, _image, ("input",), ("mask",),
                 doc="two-level U-Net with Resize, Concat and Split"),
        ZooEntry("patch_transformer", _patch_transformer,
                 lambda: (torch.randn(1, 64, generator=torch.Generator().manual_seed(0)),),
                 ("input",), ("logits",),
                 doc="transformer encoder over 8 tokens of 8 features (flattened 8x8 digits)"),
        ZooEntry("mobilenet_v3", MobileNetV3, _image, ("input",), ("logits",),
                 doc="MobileNetV3-style net: HardSwish, squeeze-excite (HardSigmoid), 5x5 DW"),
    )
}


def _randomize_batchnorm(module: nn.Module, seed: int) -> None:
    """Give normalization layers non-trivial parameters so folding them is a real test."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                c = layer.num_features
                layer.weight.copy_(1.0 + 0.2 * torch.randn(c, generator=gen))
                layer.bias.copy_(0.1 * torch.randn(c, generator=gen))
                layer.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                layer.running_var.copy_(1.0 + 0.2 * torch.rand(c, generator=gen))
            elif isinstance(layer, nn.LayerNorm) and layer.elementwise_affine:
                shape = layer.weight.shape
                layer.weight.copy_(1.0 + 0.2 * torch.randn(shape, generator=gen))
                layer.bias.copy_(0.1 * torch.randn(shape, generator=gen))


def build(name: str, seed: int = 0, **kwargs: Any) -> nn.Module:
    """Build zoo architecture ``name`` with weights drawn from ``seed``, in eval mode."""
    entry = ZOO[name]
    torch.manual_seed(seed)
    module = entry.cls(**kwargs)
    _randomize_batchnorm(module, seed)
    module.eval()
    # What `irpass lower models/zoo.py:<name>` needs besides the module.
    module.example_inputs = entry.example()  # type: ignore[assignment]
    module.input_names = entry.input_names  # type: ignore[assignment]
    module.output_names = entry.output_names  # type: ignore[assignment]
    module.dynamic_axes = entry.dynamic_axes  # type: ignore[assignment]
    return module


def resnet_cnn() -> nn.Module:
    """ResNet-style CNN (``irpass lower models/zoo.py:resnet_cnn``)."""
    return build("resnet_cnn")


def mobilenet_v2() -> nn.Module:
    """MobileNetV2-style net."""
    return build("mobilenet_v2")


def power_cnn1d() -> nn.Module:
    """1D-CNN for power-trace classification."""
    return build("power_cnn1d")


def mlp() -> nn.Module:
    """MLP."""
    return build("mlp")


def transformer() -> nn.Module:
    """Transformer encoder."""
    return build("transformer")


def unet() -> nn.Module:
    """U-Net with Resize/Concat/Split."""
    return build("unet")


def patch_transformer() -> nn.Module:
    """Transformer over 8 tokens of 8 features (the digits transformer's architecture)."""
    return build("patch_transformer")


def mobilenet_v3() -> nn.Module:
    """MobileNetV3-style net with HardSwish and HardSigmoid."""
    return build("mobilenet_v3")
