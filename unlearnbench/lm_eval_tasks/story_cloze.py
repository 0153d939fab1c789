"""Data of the story_cloze tasks, read next to this file: the task YAMLs name these functions
(`custom_dataset: !function story_cloze.english`), so `lm_eval --include_path DIR` finds the data
from any working directory (a relative `data_files` would be read from the working directory)."""

from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def _test_split(name: str) -> datasets.DatasetDict:
    data = datasets.load_dataset("json", data_files=str(HERE / f"{name}.jsonl"), split="train")
    return datasets.DatasetDict({"test": data})


def english(**_metadata) -> datasets.DatasetDict:
    return _test_split("story_cloze_en")


def spanish(**_metadata) -> datasets.DatasetDict:
    return _test_split("story_cloze_es")
