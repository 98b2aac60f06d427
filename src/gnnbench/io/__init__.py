"""Files, caches and (in later issues) downloads shared by every gnnbench component."""

from .cache import gnnbench_home
from .files import atomic_path, sha256_file

__all__ = ["atomic_path", "gnnbench_home", "sha256_file"]
