"""The exceptions that the openEO process definitions declare, one class per spec exception name.

They are process-level errors (HTTP 400) whose `code` is the name used in the process
definitions' `exceptions` and in the official test cases' `throws`.
"""

from __future__ import annotations

from terracube import errors


class ProcessException(errors.OpenEOError):
    """An exception declared by an openEO process definition; a client error."""

    status = 400


def _declare(code: str, doc: str) -> type[ProcessException]:
    return type(code, (ProcessException,), {"code": code, "__doc__": doc})


# --- dimensions -------------------------------------------------------------------------------
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
TooManyDimensions = _declare("TooManyDimensions",
                             "The cube has several temporal dimensions and `dimension` was not "
                             "given.")
DistinctDimensionLabelsRequired = _declare("DistinctDimensionLabelsRequired",
                                           "The resulting dimension labels would not be unique.")

# --- labels and bands -------------------------------------------------------------------------
LabelNotAvailable = _declare("LabelNotAvailable", "A label with the specified name does not exist.")
LabelExists = _declare("LabelExists", "A label with the specified name exists.")
LabelMismatch = _declare("LabelMismatch", "The numbers of source and target labels differ.")
LabelsNotEnumerated = _declare("LabelsNotEnumerated", "The dimension labels are not enumerated.")
BandFilterParameterMissing = _declare("BandFilterParameterMissing",
                                      "filter_bands needs `bands` or `wavelengths`.")
BandExists = _declare("BandExists", "A band with the specified name exists.")
NirBandAmbiguous = _declare("NirBandAmbiguous", "The NIR band cannot be resolved.")
RedBandAmbiguous = _declare("RedBandAmbiguous", "The red band cannot be resolved.")

# --- combining cubes, time and space ----------------------------------------------------------
OverlapResolverMissing = _declare("OverlapResolverMissing",
                                  "The cubes overlap but no overlap resolver was given.")
IncompatibleDataCubes = _declare("IncompatibleDataCubes", "The data cubes are incompatible.")
TemporalExtentEmpty = _declare("TemporalExtentEmpty", "The temporal extent is empty.")
KernelDimensionsUneven = _declare("KernelDimensionsUneven",
                                  "A kernel dimension has an even number of elements.")
DataCubePropertiesImmutable = _declare(
    "DataCubePropertiesImmutable",
    "A neighbourhood process changed the dimensions of its data cube.")
GeometriesOverlap = _declare("GeometriesOverlap", "Two polygons of apply_polygon share a pixel.")

DigitalElevationModelInvalid = _declare(
    "DigitalElevationModelInvalid",
    "The digital elevation model is not a DEM or cannot be used with the data cube.")

# --- arrays and reducers ----------------------------------------------------------------------
ArrayElementNotAvailable = _declare("ArrayElementNotAvailable",
                                    "The array has no element with the specified index or label.")
ArrayElementParameterMissing = _declare("ArrayElementParameterMissing",
                                        "array_element needs either `index` or `label`.")
ArrayElementParameterConflict = _declare("ArrayElementParameterConflict",
                                         "array_element takes only one of `index` and `label`.")
ArrayNotLabeled = _declare("ArrayNotLabeled", "The array is not a labeled array.")
ArrayLabelConflict = _declare("ArrayLabelConflict", "A label is present in both arrays.")
ArrayLengthMismatch = _declare("ArrayLengthMismatch",
                               "The numbers of values and labels differ.")
QuantilesParameterMissing = _declare("QuantilesParameterMissing",
                                     "quantiles needs `probabilities` (or the deprecated `q`).")
QuantilesParameterConflict = _declare("QuantilesParameterConflict",
                                      "quantiles takes `probabilities` or `q`, not both.")
AscendingProbabilitiesRequired = _declare("AscendingProbabilitiesRequired",
                                          "The probabilities must be in ascending order.")

# --- math and input ---------------------------------------------------------------------------
MinMaxSwapped = _declare("MinMaxSwapped", "clip: the minimum is greater than the maximum.")
FormatUnsuitable = _declare("FormatUnsuitable",
                            "The files cannot be read with the requested input format.")

# --- user-defined functions -------------------------------------------------------------------
InvalidRuntime = _declare("InvalidRuntime", "The specified UDF runtime is not supported.")
InvalidVersion = _declare("InvalidVersion", "The specified UDF runtime version is not supported.")

# --- vector processes -------------------------------------------------------------------------
UnitMismatch = _declare("UnitMismatch", "The unit of the spatial reference system is not metres.")
CountMismatch = _declare("CountMismatch",
                         "The total number of points is lower than the number of geometries.")
