"""Execution traces: one algorithm run's inputs, hints and outputs.

``Trace`` is one run, with arrays shaped exactly as CLRS-30 probes are after
``probing.finalize``: inputs and outputs squeezed (``[n]``, ``[n, n]``), hints
time-first (``[T, n]``, ``[T, n, n]``, ``[T]``, categorical fields with a trailing
class axis).

``TraceSet`` is many runs of one algorithm stored column-wise: each input and
output field as one array with a leading sample axis, each hint field as one
array whose time axes are concatenated, with ``offsets`` marking where each
sample's steps begin. Indexing it yields a ``Trace`` of read-only views.

Hints whose dense form is mostly redundant are stored as encodings and expanded
on access: ``OneHotSteps`` (mask_one and categorical hints as class indices),
``StepIntervals`` (node masks that are 1 on one run of steps, e.g. Prim's and
Dijkstra's ``mark`` and ``in_queue``), ``StepUpdates`` (node vectors that change at a
few nodes per step, kept as those updates: Prim's and Dijkstra's keys and ``pi_h``),
``EventMask`` (an edge mask whose entries switch to 1 once, e.g. ``is_bridge_h``,
``in_mst_h``, Floyd-Warshall's ``msk``) and
``RepeatedSteps`` (a value constant over a trace, e.g. ``A_t``) and ``RecordedSteps``
(steps as the kernel recorded them: pointers as int32, 0/1 masks as uint8, exact, and
the DFS walker's rows interleaved in one buffer).
``TraceSet.hint_array`` expands any of them for all traces.

``TraceSet.clrs_batch()`` returns every field densely in CLRS-30's batch layout
(``ClrsBatch``): the arrays ``clrs.build_sampler(...)[0].next()`` holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import batching, memory
from .recording import expand_events, expand_updates, one_hot
from .specs import SPECS, Stage


_SPARSE_ONES = 16  # hints with ones in under 1/16 of their entries are zeroed by memset, then get the ones


class EventMask:
    """Per-step masks that start at ``base`` and switch entry (u, v) to 1 at step
    ``events[i, u, v]`` (local to trace i; never if beyond its last step)."""

    def __init__(self, events: np.ndarray, base: np.ndarray, offsets: np.ndarray) -> None:
        self.events, self.base, self.offsets = events, base, offsets

    def rows(self, i: int) -> np.ndarray:
        """Trace i's steps ``[T_i, n, n]``."""
        return expand_events(self.events[i:i + 1], self.offsets[i:i + 2], self.base[i:i + 1])

    def dense(self) -> np.ndarray:
        """All steps ``[sum T_i, n, n]``."""
        return expand_events(self.events, self.offsets, self.base)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.events.shape[1:]

    def fill_padded(self, out: np.ndarray) -> None:
        """Write every trace's steps into ``out`` ``[T, num, n, n]`` (CLRS-30's batch layout, zero-padded)."""
        num = self.events.shape[0]
        events, base = self.events.reshape(num, -1), self.base.reshape(num, -1)
        flat = out.reshape(out.shape[0], num, -1)
        if not base.any() and batching.event_ones(events, self.offsets) * _SPARSE_ONES < out.size:
            # mostly zeros (in_mst_h): zero it all by memset, then write the ones
            batching.pad_event_ones(events, self.offsets, memory.zero(flat))
        else:
            batching.pad_events(events, base, self.offsets, flat)


class RepeatedSteps:
    """A per-trace value repeated at every step (a read-only broadcast on access)."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray) -> None:
        self.values, self.offsets = values, offsets

    def rows(self, i: int) -> np.ndarray:
        steps = int(self.offsets[i + 1] - self.offsets[i])
        return np.broadcast_to(self.values[i], (steps, *self.values.shape[1:]))

    def dense(self) -> np.ndarray:
        return np.repeat(self.values, np.diff(self.offsets), axis=0)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.values.shape[1:]

    def fill_padded(self, out: np.ndarray) -> None:
        num = self.values.shape[0]
        batching.pad_repeated(self.values.reshape(num, -1), self.offsets, out.reshape(out.shape[0], num, -1))


class OneHotSteps:
    """Per-step one-hot vectors (CLRS ``mask_one``/``categorical``) kept as class indices."""

    def __init__(self, index: np.ndarray, classes: int, offsets: np.ndarray) -> None:
        self.index, self.classes, self.offsets = index, classes, offsets

    def rows(self, i: int) -> np.ndarray:
        return one_hot(self.index[self.offsets[i]:self.offsets[i + 1]], self.classes)

    def dense(self) -> np.ndarray:
        return one_hot(self.index, self.classes)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (*self.index.shape[1:], self.classes)

    def fill_padded(self, out: np.ndarray) -> None:
        """Write every trace's steps into ``out`` ``[T, num, ..., classes]`` (zero-padded)."""
        index = self.index.reshape(self.index.shape[0], -1)
        out = out.reshape(*out.shape[:2], index.shape[1], self.classes)
        sparse = self.classes >= _SPARSE_ONES  # then zero it all by memset and write the ones
        batching.pad_one_hot(index, self.offsets, memory.zero(out) if sparse else out, sparse)


class StepIntervals:
    """Per-step node masks that are 1 on one interval of steps: ``start[i, v] <= t < stop[i, v]``
    (local to trace i), e.g. Prim's and Dijkstra's ``in_queue`` and ``mark``."""

    def __init__(self, start: np.ndarray, stop: np.ndarray, offsets: np.ndarray) -> None:
        self.start, self.stop, self.offsets = start, stop, offsets

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.start.shape[1:]

    def rows(self, i: int) -> np.ndarray:
        steps = np.arange(int(self.offsets[i + 1] - self.offsets[i]))[:, None]
        return ((self.start[i] <= steps) & (steps < self.stop[i])).astype(np.float64)

    def dense(self) -> np.ndarray:
        lengths = np.diff(self.offsets)
        trace = np.repeat(np.arange(lengths.shape[0]), lengths)
        steps = (np.arange(trace.shape[0]) - np.repeat(self.offsets[:-1] - self.offsets[0], lengths))[:, None]
        return ((self.start[trace] <= steps) & (steps < self.stop[trace])).astype(np.float64)

    def fill_padded(self, out: np.ndarray) -> None:
        num = self.start.shape[0]
        batching.pad_intervals(self.start.reshape(num, -1), self.stop.reshape(num, -1), self.offsets,
                               out.reshape(out.shape[0], num, -1))


class StepUpdates:
    """Per-step node vectors that change at a few nodes per step, e.g. Prim's and
    Dijkstra's keys and ``pi_h``: each trace's first step is ``initial`` ``[n]``, and each
    later step r (a row of the concatenated steps) is the step before it with
    ``values[e]`` at node ``nodes[e]`` for the updates ``ends[r - 1] <= e < ends[r]``."""

    def __init__(self, initial: np.ndarray, nodes: np.ndarray, values: np.ndarray, ends: np.ndarray,
                 offsets: np.ndarray, dtype: type) -> None:
        self.initial, self.nodes, self.values, self.ends = initial, nodes, values, ends
        self.offsets, self.dtype = offsets, np.dtype(dtype)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.initial.shape

    def rows(self, i: int) -> np.ndarray:
        return expand_updates(self.initial, self.nodes, self.values, self.ends, self.offsets[i:i + 2],
                              int(self.offsets[i] - self.offsets[0]), self.dtype)

    def dense(self) -> np.ndarray:
        return expand_updates(self.initial, self.nodes, self.values, self.ends, self.offsets, 0, self.dtype)

    def fill_padded(self, out: np.ndarray) -> None:
        batching.pad_updates(self.initial, self.nodes, self.values, self.ends, self.offsets, out)


class RecordedSteps:
    """Per-step values as a kernel recorded them, handed out in CLRS-30's ``dtype``.

    ``buffer`` is ``[sum T_i, ...]``, or with ``quantity`` given ``[sum T_i, quantities, ...]``
    recording several quantities together (the DFS walker's rows) of which this is one;
    it may be stored in a narrower dtype that holds the values exactly (node indices as
    int32, 0/1 masks as uint8: half to an eighth of the bytes to write).
    """

    def __init__(self, buffer: np.ndarray, offsets: np.ndarray, dtype: type, quantity: int | None = None) -> None:
        self.buffer = buffer[:, None] if quantity is None else buffer  # [sum T_i, quantities, ...]
        self.buffer.flags.writeable = False
        self.quantity = 0 if quantity is None else quantity
        self.offsets, self.dtype = offsets, np.dtype(dtype)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.buffer.shape[2:]

    def _widened(self, values: np.ndarray) -> np.ndarray:
        return values if values.dtype == self.dtype else values.astype(self.dtype)

    def rows(self, i: int) -> np.ndarray:
        start = int(self.offsets[i] - self.offsets[0])
        return self._widened(self.buffer[start:start + int(self.offsets[i + 1] - self.offsets[i]), self.quantity])

    def dense(self) -> np.ndarray:
        return self._widened(self.buffer[:, self.quantity])

    def last(self) -> np.ndarray:
        """Each trace's last step, ``[num, ...]`` (traces have at least one step)."""
        return self.buffer[self.offsets[1:] - self.offsets[0] - 1, self.quantity].astype(self.dtype)

    def fill_padded(self, out: np.ndarray) -> None:
        steps, quantities = self.buffer.shape[:2]
        batching.pad_rows(self.buffer.reshape(steps, quantities, -1), self.quantity, self.offsets,
                          out.reshape(out.shape[0], out.shape[1], -1))


EncodedSteps = EventMask | RepeatedSteps | OneHotSteps | StepIntervals | StepUpdates | RecordedSteps


@dataclass(frozen=True)
class ClrsBatch:
    """Traces in CLRS-30's batch layout, as ``Sampler.next()`` returns them.

    ``inputs`` and ``outputs`` are ``[num, ...]`` (singleton axes squeezed as CLRS-30
    squeezes them), ``hints`` float64 ``[max_steps, num, ...]`` zero-padded after each
    trace's ``lengths`` (float64, as CLRS-30 stores them) steps, one-hot fields expanded.
    """

    inputs: Mapping[str, np.ndarray]
    hints: Mapping[str, np.ndarray]
    lengths: np.ndarray
    outputs: Mapping[str, np.ndarray]
_EXPAND_ALL_LIMIT = 1 << 20  # entries of a one-hot hint worth expanding for all traces at once


@dataclass(frozen=True)
class Trace:
    """One run of ``algorithm``: ``inputs``, time-first ``hints`` and ``outputs``."""

    algorithm: str
    inputs: Mapping[str, np.ndarray]
    hints: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]

    @property
    def num_nodes(self) -> int:
        return int(np.shape(self.inputs["A"])[0]) if np.ndim(self.inputs["A"]) else 1

    @property
    def num_steps(self) -> int:
        """Number of hint steps ``T``."""
        return int(next(iter(self.hints.values())).shape[0])

    def field(self, name: str) -> np.ndarray:
        """Any field by name, whatever its stage."""
        for group in (self.inputs, self.hints, self.outputs):
            if name in group:
                return group[name]
        raise KeyError(f"{self.algorithm} has no field {name!r}; fields: {', '.join(SPECS[self.algorithm])}")


@dataclass(frozen=True)
class TraceSet(Sequence[Trace]):
    """Column-wise storage of many traces of one algorithm on graphs of equal size."""

    algorithm: str
    inputs: Mapping[str, np.ndarray]
    hints: Mapping[str, np.ndarray | EncodedSteps]
    outputs: Mapping[str, np.ndarray]
    offsets: np.ndarray
    metadata: Mapping[str, object] = field(default_factory=dict)
    _expanded: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Traces are views into this storage: keep it read-only so no view can corrupt it.
        for group in (self.inputs, self.hints, self.outputs):
            for value in group.values():
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __iter__(self) -> Iterator[Trace]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"trace index {index} out of range for {len(self)} traces")
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        squeeze = self.num_nodes == 1  # CLRS squeezes singleton axes of inputs/outputs
        return Trace(
            algorithm=self.algorithm,
            inputs={k: _squeezed(v[i], squeeze) for k, v in self.inputs.items()},
            hints={k: self._hint_rows(k, v, i, start, stop) for k, v in self.hints.items()},
            outputs={k: _squeezed(v[i], squeeze) for k, v in self.outputs.items()},
        )

    def _hint_rows(self, name: str, value: np.ndarray | EncodedSteps, i: int, start: int, stop: int) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return value[start:stop]
        if isinstance(value, OneHotSteps) and value.index.size * value.classes <= _EXPAND_ALL_LIMIT:
            # Small: expanding all traces at once is far cheaper than trace by trace.
            if name not in self._expanded:
                dense = value.dense()
                dense.flags.writeable = False
                self._expanded[name] = dense
            return self._expanded[name][start:stop]
        return value.rows(i)  # large: expand this trace only

    @property
    def num_nodes(self) -> int:
        return int(self.inputs["A"].shape[1])

    @property
    def lengths(self) -> np.ndarray:
        """Number of hint steps of each trace."""
        return np.diff(self.offsets)

    def stage(self, stage: str) -> Mapping[str, np.ndarray | EncodedSteps]:
        """The fields of one stage (``"input"``, ``"hint"`` or ``"output"``)."""
        return {Stage.INPUT: self.inputs, Stage.HINT: self.hints, Stage.OUTPUT: self.outputs}[stage]

    def clrs_batch(self, min_steps: int = 0) -> ClrsBatch:
        """Every field densely in CLRS-30's batch layout (see ``ClrsBatch``).

        Hints are padded to ``max(min_steps, longest trace)`` steps, as CLRS-30's
        ``_batch_hints``. Inputs and outputs are the set's own read-only arrays.
        """
        num, n = len(self), self.num_nodes
        lengths = self.lengths
        max_steps = max(int(min_steps), int(lengths.max()) if num else 0)

        def squeezed(value: np.ndarray) -> np.ndarray:
            return value.reshape(num, *(d for d in value.shape[1:] if d != 1)) if n == 1 else value

        shapes = [(max_steps, num, *(value.shape[1:] if isinstance(value, np.ndarray) else value.row_shape))
                  for value in self.hints.values()]
        arrays = memory.buffers([(shape, np.float64) for shape in shapes])  # one block: recycled whole
        hints = dict(zip(self.hints, arrays))
        for (name, value), out in zip(self.hints.items(), arrays):
            if isinstance(value, np.ndarray):
                batching.pad_rows(value.reshape(value.shape[0], 1, -1), 0, self.offsets,
                                  out.reshape(max_steps, num, -1))
            else:
                value.fill_padded(out)
        return ClrsBatch(inputs={k: squeezed(v) for k, v in self.inputs.items()}, hints=hints,
                         lengths=lengths.astype(np.float64),
                         outputs={k: squeezed(v) for k, v in self.outputs.items()})

    def hint_array(self, name: str) -> np.ndarray:
        """Hint ``name`` of all traces as one array ``[sum of T_i, ...]`` (expanded if encoded)."""
        value = self.hints[name]
        return value if isinstance(value, np.ndarray) else value.dense()


def _squeezed(value: np.ndarray, squeeze: bool) -> np.ndarray:
    return np.squeeze(value) if squeeze else value
