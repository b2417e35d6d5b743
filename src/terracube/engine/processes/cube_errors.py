"""The exceptions that the openEO cube processes declare, one class per spec exception name.

They are process-level errors (HTTP 400) whose `code` is the name used in the process
definitions' `exceptions` and in the official test cases' `throws`.
"""

from __future__ import annotations

from terracube import errors
from terracube.engine.cube import Dimension, RasterCube


class ProcessException(errors.OpenEOError):
    """An exception declared by an openEO process definition; a client error."""

    status = 400


def _declare(code: str, doc: str) -> type[ProcessException]:
    return type(code, (ProcessException,), {"code": code, "__doc__": doc})


DimensionNotAvailable = _declare("DimensionNotAvailable",
                                 "A dimension with the specified name does not exist.")
DimensionExists = _declare("DimensionExists", "A dimension with the specified name exists.")
DimensionMissing = _declare("DimensionMissing", "A dimension of the required type is missing.")
DimensionAmbiguous = _declare("DimensionAmbiguous",
                              "A dimension of the required type is missing or ambiguous.")
DimensionLabelCountMismatch = _declare("DimensionLabelCountMismatch",
                                       "The dimension has more than one label.")
DimensionMismatch = _declare("DimensionMismatch", "The dimensions of two cubes do not fit.")
TargetDimensionExists = _declare("TargetDimensionExists",
                                 "A dimension with the specified target name exists.")
LabelNotAvailable = _declare("LabelNotAvailable", "A label with the specified name does not exist.")
LabelExists = _declare("LabelExists", "A label with the specified name exists.")
LabelMismatch = _declare("LabelMismatch", "The numbers of source and target labels differ.")
LabelsNotEnumerated = _declare("LabelsNotEnumerated", "The dimension labels are not enumerated.")
BandFilterParameterMissing = _declare("BandFilterParameterMissing",
                                      "filter_bands needs `bands` or `wavelengths`.")
BandExists = _declare("BandExists", "A band with the specified name exists.")
NirBandAmbiguous = _declare("NirBandAmbiguous", "The NIR band cannot be resolved.")
RedBandAmbiguous = _declare("RedBandAmbiguous", "The red band cannot be resolved.")
OverlapResolverMissing = _declare("OverlapResolverMissing",
                                  "The cubes overlap but no overlap resolver was given.")
IncompatibleDataCubes = _declare("IncompatibleDataCubes", "The data cubes are incompatible.")
TemporalExtentEmpty = _declare("TemporalExtentEmpty", "The temporal extent is empty.")


def require_dimension(cube: RasterCube, name: str, parameter: str = "dimension") -> Dimension:
    """The cube's dimension called `name`, or DimensionNotAvailable naming the parameter."""
    dim = cube.dim(name)
    if dim is None:
        available = ", ".join(d.name for d in cube.dimensions) or "none"
        raise DimensionNotAvailable(
            f"Dimension '{name}' does not exist; available: {available}.", argument=parameter)
    return dim
