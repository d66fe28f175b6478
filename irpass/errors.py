"""The errors a user of irpass can see.

Every error a user can hit is an :class:`IrpassError`. Its message says what is wrong; its
``hint`` says what to do about it. The CLI prints ``error: <message>`` and ``hint: <hint>`` and
exits non-zero without a traceback (unless ``--debug``).
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "IrpassError",
    "LoweringError",
    "ModelLoadError",
    "OutputError",
    "PassFailedError",
    "PassOptionError",
    "PipelineError",
    "TargetError",
    "UnsupportedModelError",
    "UsageError",
    "VerificationError",
]


class IrpassError(Exception):
    """Base class of every error irpass reports to a user."""

    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ModelLoadError(IrpassError):
    """The input model file cannot be read as an ONNX model."""


class UnsupportedModelError(IrpassError):
    """The model is valid ONNX but uses something irpass cannot process (opset, op, data)."""


class PipelineError(IrpassError):
    """The pipeline text is malformed or names an unknown pass."""


class PassOptionError(PipelineError):
    """A pass option is unknown or has a value of the wrong type."""


class VerificationError(IrpassError):
    """A pass produced a model that fails verification (checker, ORT load, numerics)."""

    def __init__(self, message: str, hint: str | None = None, pass_name: str | None = None) -> None:
        super().__init__(message, hint)
        self.pass_name = pass_name


class PassFailedError(IrpassError):
    """A pass raised while running; the reproducer path says where to find the inputs."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        pass_name: str | None = None,
        reproducer: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.pass_name = pass_name
        self.reproducer = reproducer


class LoweringError(IrpassError):
    """A PyTorch module could not be turned into ONNX."""


class DataError(IrpassError):
    """Calibration or evaluation data do not match the model or cannot be read."""


class OutputError(IrpassError):
    """An output path cannot be written."""


class TargetError(IrpassError):
    """A target profile is unknown or invalid, or a model cannot be prepared for its target."""


class UsageError(IrpassError):
    """The command line itself is wrong (unknown option, bad choice, missing argument)."""
