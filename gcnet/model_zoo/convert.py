"""An upstream checkpoint file converted to a gcnet checkpoint file: what
``tools/convert_checkpoint.py`` runs."""

import os
from typing import Sequence

from detectron2.config import instantiate

from gcnet.engine.config import load_config

from .converters import CONVERTERS
from .fit import checkpoint_mismatches
from .handler import convert_upstream_file, save_checkpoint

__all__ = ["convert_checkpoint"]


def convert_checkpoint(
    converter: str, input_file: str, output_file: str, config: str = "", overrides: Sequence[str] = ()
) -> None:
    """Convert ``input_file`` with ``CONVERTERS[converter]`` and write ``output_file``
    atomically. With ``config`` (a LazyConfig file, with ``key=value`` ``overrides``), the
    result must also fill every parameter of its model exactly. Nothing is written when a
    check fails.

    Raises:
        FileNotFoundError: ``input_file`` does not exist.
        ValueError: an unknown converter, an upstream key that finds no place, a result that
            does not fit ``config``, or a file that is not a safe weights file.
    """
    if converter not in CONVERTERS:
        raise ValueError(f"Unknown converter {converter!r}; known: {', '.join(sorted(CONVERTERS))}")
    if overrides and not config:
        raise ValueError(f"Overrides {list(overrides)} need a config")
    if not os.path.isfile(input_file):
        raise FileNotFoundError(f"{input_file}: no such file")
    converted = convert_upstream_file(converter, input_file)
    if config:
        problems = checkpoint_mismatches(instantiate(load_config(config, list(overrides)).model), converted)
        if problems:
            raise ValueError(f"the result does not fit {config}: " + "; ".join(problems))
    save_checkpoint(converted, output_file)
