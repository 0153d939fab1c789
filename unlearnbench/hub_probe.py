"""No request to the Hugging Face hub when GPT-Neo is imported, unless asked.

transformers 5 depends on the `kernels` package, and with it installed, importing its GPT-Neo module
looks for flash-attention kernels on the hub (`is_flash_attn_kernel_fallback_available`, called
from `modeling_gpt_neo` at import): a network request on every command, and under
HF_HUB_OFFLINE=1 three warnings, for kernels this harness never uses (it runs GPT-Neo's eager
attention or its own fused kernels, models/kernels.py). Unless `USE_HUB_KERNELS` (transformers'
own switch for hub kernels) is set, that probe answers "not available" without asking the hub.
Installed from the package's `__init__`, it costs nothing until transformers is imported.
"""

from __future__ import annotations

import importlib.abc
import os
import sys

MODULE = "transformers.utils.import_utils"
PROBE = "is_flash_attn_kernel_fallback_available"


def _no_probe(module) -> None:
    if hasattr(module, PROBE):  # older and newer transformers may not have it: nothing to do
        setattr(module, PROBE, lambda *args, **kwargs: False)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds `MODULE` with the other finders and replaces its probe right after it runs."""

    def find_spec(self, name, path, target=None):
        if name != MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                run = spec.loader.exec_module

                def exec_module(module, run=run):
                    run(module)
                    _no_probe(module)

                spec.loader.exec_module = exec_module
                return spec
        return None


def install() -> None:
    if "USE_HUB_KERNELS" in os.environ:  # asked for hub kernels: transformers decides
        return
    if MODULE in sys.modules:
        _no_probe(sys.modules[MODULE])
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
