"""Seldon Core v2 pipeline semantics, pure: which steps run, on which tensors, under which names.

What Seldon 2.10's dataflow engine does (read from its source; the gateway of ``market-ab serve`` builds on this):

- ``a`` and ``a.outputs`` are all of step ``a``'s output tensors, names kept; ``a.outputs.t`` is tensor ``t``
  alone; ``a.inputs`` is the request ``a`` received; ``<pipeline>.inputs[.t]`` is the pipeline's request. A step
  without ``inputs`` takes the pipeline's inputs.
- ``tensorMap`` renames a fully qualified reference (``a.outputs.t: new``); other tensors keep their names.
- Joins (``inputsJoinType``, ``triggersJoinType``, the output's ``stepsJoin``): ``inner`` needs every reference,
  ``outer`` takes those present, ``any`` the first present. Merged tensors keep the first of a repeated name.
- Triggers only gate a step; their tensors are not passed on.
- A step whose inputs are absent does not run, and that is no error: a router answers with the tensor of the arm
  it chose, so only that arm's step runs.
- A step with ``batch.size`` is a side step: its inputs are collected along the first dimension and sent once
  there are at least ``size`` rows, off the response path (``RowBatcher``).

Tensors are opaque here (``name -> array``); calling a model is the caller's ``call(step, tensors)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from seldon_market_ab.protocol_types import Tensors

JOINS = ("inner", "outer", "any")


@dataclass(frozen=True)
class Reference:
    source: str  # a step, or the pipeline itself
    kind: str  # "inputs" or "outputs"
    tensor: str | None = None  # None: every tensor

    @classmethod
    def parse(cls, text: str, pipeline: str) -> Reference:
        """
        >>> Reference.parse("router.outputs.baseline", "mab")
        Reference(source='router', kind='outputs', tensor='baseline')
        >>> Reference.parse("mab", "mab"), Reference.parse("router", "mab")
        (Reference(source='mab', kind='inputs', tensor=None), Reference(source='router', kind='outputs', tensor=None))
        """
        name, _, rest = str(text).partition(".")
        kind, _, tensor = rest.partition(".")
        if kind not in ("", "inputs", "outputs") or not name:
            raise ValueError(f"'{text}' is not '<step>[.inputs|.outputs[.<tensor>]]'")
        return cls(name, kind or ("inputs" if name == pipeline else "outputs"), tensor or None)

    @property
    def topic(self) -> str:
        return f"{self.source}.{self.kind}"

    def qualified(self, tensor: str) -> str:
        return f"{self.topic}.{tensor}"


@dataclass(frozen=True)
class Step:
    name: str
    inputs: tuple[Reference, ...]
    triggers: tuple[Reference, ...] = ()
    tensor_map: dict[str, str] = field(default_factory=dict)
    inputs_join: str = "inner"
    triggers_join: str = "inner"
    batch_size: int | None = None


@dataclass(frozen=True)
class Plan:
    name: str
    steps: tuple[Step, ...]  # in an order where every step comes after the steps it reads
    output: tuple[Reference, ...]
    output_join: str = "inner"
    output_tensor_map: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, pipeline: dict) -> Plan:
        name, spec = pipeline["metadata"]["name"], pipeline["spec"]

        def references(texts) -> tuple[Reference, ...]:
            return tuple(Reference.parse(text, name) for text in texts or ())

        steps = [Step(step["name"], references(step.get("inputs")) or (Reference(name, "inputs"),),
                      references(step.get("triggers")), dict(step.get("tensorMap") or {}),
                      step.get("inputsJoinType", "inner"), step.get("triggersJoinType", "inner"),
                      (step.get("batch") or {}).get("size"))
                 for step in spec["steps"]]
        output = spec.get("output") or {}
        return cls(name, _ordered(steps, name), references(output.get("steps")), output.get("stepsJoin", "inner"),
                   dict(output.get("tensorMap") or {}))

    @property
    def side_steps(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.batch_size)

    async def run(self, request: Tensors, call: Callable[[str, Tensors], Awaitable[Tensors]]) -> RunResult:
        """Every step on the response path, in waves: a wave holds the steps none of whose sources is still
        pending, and runs them together (a step may wait for an unrelated step of its wave). ``call(step,
        tensors)`` returns the step model's output tensors; the first failure propagates."""
        available: dict[str, Tensors] = {f"{self.name}.inputs": request}
        pending = [step for step in self.steps if not step.batch_size]
        ran: list[str] = []
        while pending:
            # a step may start once no pending step is one it reads from
            ready = [s for s in pending if not _reads(s) & {p.name for p in pending if p is not s}]
            pending = [s for s in pending if s not in ready]
            taken = {step.name: inputs for step in ready if (inputs := self.step_inputs(step, available)) is not None}
            for step_name, inputs in taken.items():
                available[f"{step_name}.inputs"] = inputs
            outputs = await asyncio.gather(*(call(step_name, inputs) for step_name, inputs in taken.items()))
            for step_name, tensors in zip(taken, outputs, strict=True):
                available[f"{step_name}.outputs"] = tensors
                ran.append(step_name)
        side = {step.name: inputs for step in self.side_steps
                if (inputs := self.step_inputs(step, available)) is not None}
        output = select(self.output, self.output_join, self.output_tensor_map, available)
        return RunResult(output, ran, side)

    def step_inputs(self, step: Step, available: dict[str, Tensors]) -> Tensors | None:
        """What ``step`` receives given what has been produced so far, or None when it does not run."""
        if step.triggers and select(step.triggers, step.triggers_join, {}, available) is None:
            return None
        return select(step.inputs, step.inputs_join, step.tensor_map, available)


@dataclass(frozen=True)
class RunResult:
    output: Tensors | None  # None: no output step produced anything the output takes
    ran: list[str]  # the steps that ran, in order
    side_inputs: dict[str, Tensors]  # what each side step takes from this request


def select(references: tuple[Reference, ...], join: str, tensor_map: dict[str, str],
           available: dict[str, Tensors]) -> Tensors | None:
    """The tensors ``references`` pick from ``available`` (topic -> tensors), renamed and joined; None when
    the join is not satisfied."""
    if join not in JOINS:
        raise ValueError(f"join '{join}' is not one of {', '.join(JOINS)}")
    parts = []
    for reference in references:
        tensors = available.get(reference.topic) or {}
        names = [reference.tensor] if reference.tensor else list(tensors)
        picked = {tensor_map.get(reference.qualified(n), n): tensors[n] for n in names if n in tensors}
        parts.append(picked)
    present = [part for part in parts if part]
    if not present or (join == "inner" and len(present) < len(parts)):
        return None
    if join == "any":
        return present[0]
    merged: Tensors = {}
    for part in present:
        for tensor_name, value in part.items():
            merged.setdefault(tensor_name, value)
    return merged


class RowBatcher:
    """A side step's batch: tensors of successive requests stacked along the first dimension, released once
    they hold at least ``size`` rows (what Seldon's ``batch: {size: N}`` delivers to the step).

    >>> batcher = RowBatcher(3)
    >>> batcher.add({"x": np.ones((2, 4))}) is None
    True
    >>> batcher.add({"x": np.zeros((2, 4))})["x"].shape
    (4, 4)
    """

    def __init__(self, size: int):
        self.size = size
        self._parts: list[Tensors] = []
        self._rows = 0

    def add(self, tensors: Tensors) -> Tensors | None:
        """Raises ValueError for tensors that cannot join the batch (other names, or other shapes past the first
        dimension); the batch is left as it was."""
        arrays = {name: np.asarray(value) for name, value in tensors.items()}
        if not arrays or len({len(a) for a in arrays.values()}) != 1:
            raise ValueError(f"a batched step takes tensors of equal first dimension, got "
                             f"{ {n: list(a.shape) for n, a in arrays.items()} }")
        if self._parts:
            first = self._parts[0]
            if set(arrays) != set(first) or any(arrays[n].shape[1:] != first[n].shape[1:]
                                                or arrays[n].dtype != first[n].dtype for n in first):
                raise ValueError(f"tensors {_described(arrays)} do not stack with the batch's {_described(first)}")
        self._parts.append(arrays)
        self._rows += len(next(iter(arrays.values())))
        if self._rows < self.size:
            return None
        parts, self._parts, self._rows = self._parts, [], 0
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _described(arrays: dict) -> dict[str, str]:
    return {name: f"{array.dtype}{list(array.shape)}" for name, array in arrays.items()}


def _reads(step: Step) -> set[str]:
    return {r.source for r in step.inputs + step.triggers}


def _ordered(steps: list[Step], pipeline: str) -> tuple[Step, ...]:
    """Steps after every step they read (Kahn's algorithm, keeping the manifest's order among equals)."""
    names = {step.name for step in steps}
    done: list[Step] = []
    remaining = list(steps)
    while remaining:
        ready = [s for s in remaining if (_reads(s) - {pipeline}) & names <= {d.name for d in done}]
        if not ready:
            raise ValueError(f"pipeline '{pipeline}' has a cycle among {', '.join(s.name for s in remaining)}")
        done += ready
        remaining = [s for s in remaining if s not in ready]
    return tuple(done)
