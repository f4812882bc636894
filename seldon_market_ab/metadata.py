"""What a model's metadata (REST ``GET /v2/models/<m>``, gRPC ``ModelMetadata``) says it takes and answers.

MLServer answers metadata from the model settings (``inputs``, ``outputs``, ``versions``), so a model-settings.json
that declares nothing leaves the clients that build requests from metadata (tritonclient, KServe) nothing to build
with. Each runtime states its :class:`Signature` from what it really decodes and answers. Writers put
:func:`settings_fields` into model-settings.json, and at load the runtime calls :func:`serve_signature`, which makes
its settings serve the signature whatever the file says: Seldon's agent may rewrite the file, and a Model's
``spec.parameters`` may change what the runtime answers (a router's ``arms`` name its outputs). A file that
declares other names, datatypes or shapes is logged with the differences at each load; a field the file leaves out
is simply filled in.

A tensor's ``parameters`` carry short hints for clients, strings or booleans because gRPC's metadata parameters
hold nothing else: ``request`` (the request kinds it belongs to, comma-separated), ``one_of`` (the names of which
a request sends, or an answer holds, exactly one) and ``optional`` (a request may leave it out, an answer may lack
it).

>>> signature = Signature(
...     inputs=(TensorSpec("x", "FP32", (-1, 3)),),
...     outputs=(TensorSpec("y", "INT32", (-1,)), TensorSpec("note", "BYTES", (1,), {"optional": True})))
>>> fields = settings_fields(signature, "1")
>>> fields["inputs"], fields["versions"]
([{'name': 'x', 'datatype': 'FP32', 'shape': [-1, 3]}], ['1'])
>>> fields["outputs"][1]
{'name': 'note', 'datatype': 'BYTES', 'shape': [1], 'parameters': {'optional': True}}

At load, a declaration that differs is named and replaced:

>>> from mlserver import MLModel
>>> from mlserver.settings import ModelSettings
>>> model = MLModel(ModelSettings(name="m", implementation=MLModel, parameters={"version": "1"},
...                               inputs=[{"name": "x", "datatype": "FP64", "shape": [-1, 3]}]))
>>> for difference in serve_signature(model, signature):
...     print(difference)
inputs: 'x' is declared FP64 [-1, 3], served FP32 [-1, 3]
>>> [t.name for t in model.settings.outputs], model.settings.versions
(['y', 'note'], ['1'])
>>> serve_signature(model, signature)  # what it serves now is what it declares
[]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlserver import MLModel
from mlserver.types import Datatype, MetadataTensor

from .protocol_types import check_datatype

logger = logging.getLogger(__name__)

ParameterValue = str | bool  # what a gRPC metadata parameter holds besides integers (and all JSON keeps)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: ``-1`` in ``shape`` is a dimension of any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)

    def __post_init__(self):
        check_datatype(f"tensor {self.name!r}", self.datatype)  # TensorError, a ValueError
        if any(dimension < -1 for dimension in self.shape):
            raise ValueError(f"tensor {self.name!r}: dimensions are sizes or -1, got {list(self.shape)}")

    def as_dict(self) -> dict:
        """The tensor as model-settings.json (and REST metadata) spell it."""
        tensor = {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}
        return {**tensor, "parameters": dict(self.parameters)} if self.parameters else tensor

    def describe(self) -> str:
        return f"{self.datatype} {list(self.shape)}"


@dataclass(frozen=True)
class Signature:
    """What a runtime takes and answers; names are unique among the inputs and among the outputs, which metadata
    could not tell apart otherwise (an input and an output may share a name)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def __post_init__(self):
        for kind in ("inputs", "outputs"):
            names = [tensor.name for tensor in getattr(self, kind)]
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"{kind} {repeated} are named more than once; metadata could not tell them apart")


def settings_fields(signature: Signature, version: str | None) -> dict:
    """The model-settings.json fields that declare ``signature``: ``inputs``, ``outputs`` and ``versions``
    (``[version]``; left out without a version)."""
    fields = {"inputs": [t.as_dict() for t in signature.inputs], "outputs": [t.as_dict() for t in signature.outputs]}
    return {**fields, "versions": [version]} if version else fields


def serve_signature(model: MLModel, signature: Signature) -> list[str]:
    """Make ``model`` (a runtime, from its ``load``) serve ``signature`` as its metadata, and ``versions``
    ``[parameters.version]`` when a version is set; return the ways the file's declaration differed (logged as one
    warning at each load). Set through the model, so that MLServer's index of tensors by name follows too."""
    settings = model.settings
    version = settings.parameters.version if settings.parameters else None
    differences = [*_differences("inputs", settings.inputs, signature.inputs),
                   *_differences("outputs", settings.outputs, signature.outputs)]
    if version and settings.versions and settings.versions != [version]:
        differences.append(f"versions: declared {settings.versions}, served {[version]}")
    model.inputs = [MetadataTensor.model_validate(t.as_dict()) for t in signature.inputs]
    model.outputs = [MetadataTensor.model_validate(t.as_dict()) for t in signature.outputs]
    if version:
        settings.versions = [version]
    if differences:
        logger.warning("%s: model-settings.json declares other metadata than the runtime serves (%s); serving the "
                       "runtime's signature", settings.name, "; ".join(differences))
    return differences


def _differences(kind: str, declared: list[MetadataTensor], served: tuple[TensorSpec, ...]) -> list[str]:
    """How a declaration differs from what is served, tensor by tensor (nothing when nothing is declared)."""
    if not declared:
        return []
    # as declared, unchecked: a declaration this module would refuse is a difference to log, not a failed load
    before = {tensor.name: f"{Datatype(tensor.datatype).value} {list(tensor.shape)}" for tensor in declared}
    after = {tensor.name: tensor.describe() for tensor in served}
    out = [f"{kind}: {name!r} is declared but not served" for name in before if name not in after]
    out += [f"{kind}: {name!r} is served but not declared" for name in after if name not in before]
    # parameters are hints, and Seldon's agent drops them when it rewrites the file: not a difference
    out += [f"{kind}: {name!r} is declared {before[name]}, served {after[name]}" for name in after
            if name in before and before[name] != after[name]]
    return out

