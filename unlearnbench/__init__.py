"""unlearnbench: a benchmark harness for removing capabilities from language models."""

from unlearnbench import hub_probe

__version__ = "0.1.0"

hub_probe.install()  # importing GPT-Neo asks the hub for nothing unless asked (hub_probe.py)
