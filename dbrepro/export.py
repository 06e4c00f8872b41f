"""ONNX export of a trained embedding model (``dbrepro export --run RUN model.onnx``).

The exported graph is the embedding network alone (backbone, plus the Residual Balancing Module
when the run has one); the classification head and the loss terms stay behind. Its contract:

=============  ==========================================================================
input          ``images``: float32 ``N x 3 x S x S``, RGB, normalised as
               :func:`dbrepro.models.normalize_images` does, ``(x / 255 - 0.5) / 0.5``
output         ``embeddings``: float32 ``N x D``, *not* L2-normalised (cosine scores
               normalise them, as :func:`dbrepro.eval.pair_scores` does)
batch          dynamic (any ``N``) by default; fixed at 1 with ``dynamic_batch=False``
=============  ==========================================================================

The model's metadata (``onnx.ModelProto.metadata_props``) repeats this contract and names the run,
so a deployed file says what it expects without this package.

Export uses PyTorch's TorchScript-based exporter (``dynamo=False``): the newer ``torch.export``
exporter needs the ``onnxscript`` package, which is not among the pinned dependencies. Both need
``onnx`` (the ``dev`` extra: ``pip install -e '.[dev]'``).
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .models import FaceModel
from .paths import atomic_write_bytes
from .runs import Run
from .train import load_trained

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
#: The normalisation the exported model expects its input to have (see the module docstring).
INPUT_NORMALIZATION = "(x / 255 - 0.5) / 0.5 of uint8 RGB pixels x"


class IncompleteRunError(ValueError):
    """The run to export has no trained model yet (its ``metrics.json`` or ``model.pt`` is missing)."""


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ModuleNotFoundError(
            "ONNX export needs the onnx package (the dev extra): pip install -e '.[dev]' or pip install onnx==1.23.2"
        ) from None
    return onnx


def _model_of(source: Run | nn.Module) -> tuple[nn.Module, dict[str, str]]:
    """The embedding network to export (a CPU copy in eval mode) and metadata describing it."""
    if isinstance(source, Run):
        if not source.complete:
            raise IncompleteRunError(
                f"run {source.key} is not complete ({source.metrics_path.name} or {source.model_path.name} is "
                f"missing in {source.dir}): train it first (dbrepro train ...)"
            )
        module, cfg = load_trained(source, device="cpu")
        meta = {"dbrepro.run": source.key, "dbrepro.backbone": cfg.backbone, "dbrepro.head": cfg.head,
                "dbrepro.rbm": str(cfg.rbm)}
        return module.model, meta
    if isinstance(source, nn.Module):
        model = copy.deepcopy(source).cpu()  # never move or retrain the caller's model
        return model, {}
    raise TypeError(f"export_onnx: source must be a dbrepro.runs.Run or a FaceModel, got {type(source).__name__}")


def _image_size_of(model: nn.Module, source: Run | nn.Module, image_size: int | None) -> int:
    if image_size is None:
        if isinstance(source, Run):
            image_size = source.config()["image_size"]
        else:
            image_size = getattr(getattr(model, "backbone", model), "image_size", None)
        if image_size is None:
            raise ValueError("export_onnx: image_size is not known from the model; pass image_size=S")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"export_onnx: image_size must be a positive integer, got {image_size!r}")
    return image_size


def export_onnx(
    source: Run | FaceModel,
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> Path:
    """Write the embedding model of ``source`` to ``path`` as ONNX; returns the path.

    Parameters
    ----------
    source
        A complete run of the run cache (its ``model.pt`` is loaded on the CPU), or a
        :class:`~dbrepro.models.FaceModel` (exported from a copy; the model itself is untouched).
    path
        The ``.onnx`` file; written atomically (a temp file in the same folder, then a rename),
        so an export that fails leaves nothing behind.
    image_size
        Side ``S`` of the square input; default: the run's ``image_size``, or the backbone's.
    opset
        ONNX opset version.
    dynamic_batch
        Leave the batch dimension free (named ``batch``); ``False`` fixes it at 1.

    Raises
    ------
    IncompleteRunError
        ``source`` is a run that has not finished training.
    ValueError
        No usable ``image_size``.
    """
    onnx = _require_onnx()
    model, meta = _model_of(source)
    size = _image_size_of(model, source, image_size)
    model.eval()
    dummy = torch.zeros(2 if dynamic_batch else 1, 3, size, size)
    with torch.no_grad():
        embedding = model(dummy)
    if not isinstance(embedding, torch.Tensor) or embedding.ndim != 2:
        raise ValueError(f"export_onnx: the model must map images to (N, D) embeddings, got {type(embedding).__name__}")

    buffer = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export (which needs onnxscript),
        # and the tracer warns about the models' Python-side shape checks, which it bakes in as constants;
        # neither affects the graph (the tests compare it with PyTorch at several batch sizes).
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model, (dummy,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    meta.update({
        "dbrepro.input": f"{INPUT_NAME}: float32 N x 3 x {size} x {size} RGB, {INPUT_NORMALIZATION}",
        "dbrepro.output": f"{OUTPUT_NAME}: float32 N x {embedding.shape[1]}, not L2-normalised",
        "dbrepro.image_size": str(size),
        "dbrepro.embedding_size": str(embedding.shape[1]),
    })
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "dbrepro"
    onnx.checker.check_model(proto)
    path = Path(path)
    atomic_write_bytes(path, proto.SerializeToString())
    return path
