"""Files, caches and (in later issues) downloads shared by every gnnbench component."""

from .cache import gnnbench_home

__all__ = ["gnnbench_home"]
