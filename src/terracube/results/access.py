"""The results side of the engine's `FileFormats` port (engine/ports.py): the format table of
results/formats.py by the names users give."""

from __future__ import annotations

from collections.abc import Sequence

from terracube.results.formats import INPUT_FORMATS, output_format


class FormatTable:
    """engine.ports.FileFormats over OUTPUT_FORMATS / INPUT_FORMATS."""

    def output_format(self, name: str) -> str | None:
        return output_format(name)

    def input_format(self, name: str) -> str | None:
        fmt = output_format(name)
        return fmt if fmt in INPUT_FORMATS else None

    def input_formats(self) -> Sequence[str]:
        return tuple(INPUT_FORMATS)
