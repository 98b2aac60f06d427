"""Load the parameters of DeepMind's CLRS-30 ``BaselineModel`` (haiku) into gnnbench's network.

``load_clrs_params(model, params)`` copies a haiku parameter tree ``{module path: {name: array}}``
(``BaselineModel.params``, or the ``"params"`` entry of a checkpoint written by CLRS-30's
``BaselineModel.save_model``) into an :class:`~gnnbench.models.algo.net.EncodeProcessDecode` built for
the same algorithm, processor and hidden size. The module names come from the model's
``haiku_names()`` (dm-clrs 2.0.3's naming: https://github.com/google-deepmind/clrs/blob/v2.0.3/clrs/_src/nets.py);
a linear's ``w`` ``[in, out]`` becomes ``weight`` ``[out, in]``, its ``b`` the ``bias``, a layer norm's
``scale``/``offset`` its ``weight``/``bias``. Nothing is copied unless every parameter matches:
otherwise one ``ValueError`` lists each missing, unexpected or mis-shaped parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

_HAIKU_FIELDS = {nn.Linear: (("w", "weight", True), ("b", "bias", False)),
                 nn.LayerNorm: (("scale", "weight", False), ("offset", "bias", False))}


def _fields(module: nn.Module) -> tuple[tuple[str, str, bool], ...]:
    for kind, fields in _HAIKU_FIELDS.items():
        if isinstance(module, kind):
            return fields
    raise TypeError(f"no haiku counterpart for {type(module).__name__}")


def load_clrs_params(model: nn.Module, params: Mapping[str, Mapping[str, Any]]) -> None:
    """Copy CLRS-30's haiku ``params`` into ``model`` (see the module docstring); ``ValueError`` naming
    every unmatched or mis-shaped parameter, in which case ``model`` is left unchanged."""
    if not hasattr(model, "haiku_names"):
        raise ValueError(f"model must be an EncodeProcessDecode (with haiku_names()), got {type(model).__name__}")
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping {{haiku module: {{name: array}}}}, got {type(params).__name__}")
    names = model.haiku_names()
    problems: list[str] = []
    copies: list[tuple[torch.Tensor, np.ndarray]] = []
    for torch_path, haiku_path in names.items():
        module = model.get_submodule(torch_path)
        entry = params.get(haiku_path)
        if entry is None:
            problems.append(f"{haiku_path}: missing from params (needed by {torch_path})")
            continue
        expected_keys = set()
        for haiku_name, torch_name, transpose in _fields(module):
            expected_keys.add(haiku_name)
            target = getattr(module, torch_name)
            if haiku_name not in entry:
                problems.append(f"{haiku_path}/{haiku_name}: missing from params (needed by {torch_path}.{torch_name})")
                continue
            value = np.asarray(entry[haiku_name])
            value = value.T if transpose else value
            if tuple(value.shape) != tuple(target.shape):
                shape = tuple(value.T.shape) if transpose else tuple(value.shape)
                want = tuple(target.shape[::-1]) if transpose else tuple(target.shape)
                problems.append(f"{haiku_path}/{haiku_name}: shape {shape}, expected {want} "
                                f"(for {torch_path}.{torch_name})")
                continue
            copies.append((target, value))
        problems.extend(f"{haiku_path}/{key}: unexpected (not a parameter of {torch_path})"
                        for key in sorted(set(entry) - expected_keys))
    known = set(names.values())
    problems.extend(f"{path}: unexpected (no module of the model has this haiku name)"
                    for path in sorted(set(params) - known))
    if problems:
        raise ValueError(f"{len(problems)} parameter(s) of the CLRS-30 params do not match the model:\n  "
                         + "\n  ".join(problems))
    with torch.no_grad():
        for target, value in copies:
            target.copy_(torch.tensor(np.ascontiguousarray(value), dtype=target.dtype))
