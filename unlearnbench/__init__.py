"""unlearnbench: a benchmark harness for removing capabilities from language models."""

__version__ = "0.1.0"
