"""PyTorch Geometric, imported once without the ``FutureWarning`` its own import triggers.

torch deprecates ``torch.jit.script`` (a ``FutureWarning`` on every call); PyG 2.8 calls it while importing
(``torch_geometric/nn/pool/select/base.py`` and ``connect/base.py``), so the first ``import torch_geometric`` of a
process printed the warning although nothing in gnnbench or the user's code scripts anything. gnnbench's modules
that use PyG import this module first; the filter covers that import only (the process's filters are restored).
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    import torch_geometric  # noqa: F401
