"""Re-export of :mod:`rcml_st.modules.architectures` (the built-in architectures live with the model)."""

from __future__ import annotations

from rcml_st.modules.architectures import ARCHITECTURES, is_builtin, write_architecture

__all__ = ["ARCHITECTURES", "is_builtin", "write_architecture"]
