"""convert_data_type (CDSE's experimental process, the client's `DataCube.convert_data_type`):
the values of a cube as another numeric type, e.g. uint8 for small GeoTIFFs.

Type names as on CDSE: `bool`, `int8`, `uint8`, `int16`, `uint16`, `int32`, `uint32`,
`float32`, `float64`; integer types have a no-data value (int8 -128, uint8 0, int16 -32768,
uint16 0, int32 -2147483648, uint32 0), a suffix `raw` gives none (missing values become 0)
and `ud<value>` another one (`uint8ud255`). Missing values (NaN, or the input's no-data)
become the no-data value. Fractions are cut towards zero, as CDSE converts; values outside the
type's range are clipped to it (so 300 in uint8 is 255), and a valid value equal to the no-data
value is no-data afterwards (0 in uint8).
"""

from __future__ import annotations

import re

import numpy as np
import xarray as xr

from terracube import errors
from terracube.datacube.cube import RasterCube
from terracube.engine.registry import process

_TYPE = re.compile(r"^(bool|u?int(?:8|16|32)|float(?:32|64))(raw|ud(-?\d+))?$")
_NODATA = {"int8": -128, "uint8": 0, "int16": -32768, "uint16": 0, "int32": -2147483648,
           "uint32": 0}


def _missing(data: RasterCube) -> xr.DataArray:
    values = data.data
    if np.issubdtype(values.dtype, np.floating):
        return values.isnull()
    if data.nodata is not None and not np.isnan(data.nodata):
        return values == data.nodata
    return xr.zeros_like(values, dtype=bool)


@process()
def convert_data_type(data: RasterCube, data_type: str) -> RasterCube:
    if not isinstance(data, RasterCube):
        raise errors.ProcessParameterInvalid("'data' must be a raster data cube.",
                                             argument="data")
    match = _TYPE.match(str(data_type).strip().lower())
    if match is None:
        raise errors.ProcessParameterInvalid(
            f"Data type '{data_type}' is not supported; use bool, int8, uint8, int16, uint16, "
            "int32, uint32, float32 or float64, optionally with the suffix 'raw' (no no-data "
            "value) or 'ud<value>' (that no-data value, e.g. uint8ud255).",
            argument="data_type")
    name, suffix, custom = match.group(1), match.group(2), match.group(3)
    missing = _missing(data)
    values = data.data.astype("float64")
    if name == "bool":
        out = (values != 0) & ~missing
        return data.with_data(out.assign_attrs(data.data.attrs), nodata=None)
    if name.startswith("float"):
        out = values.where(~missing)
        nodata: float | None = None
        if custom is not None:
            nodata = float(custom)
            out = out.fillna(nodata)
        return data.with_data(out.astype(name).assign_attrs(data.data.attrs), nodata=nodata)
    info = np.iinfo(name)
    if custom is not None:
        if not info.min <= int(custom) <= info.max:
            raise errors.ProcessParameterInvalid(
                f"The no-data value {custom} is outside the range of {name} "
                f"({info.min} to {info.max}).", argument="data_type")
        nodata = int(custom)
    else:
        nodata = None if suffix == "raw" else _NODATA[name]
    converted = xr.apply_ufunc(np.trunc, values.clip(info.min, info.max), dask="allowed")
    out = converted.where(~missing, 0 if nodata is None else nodata).astype(name)
    return data.with_data(out.assign_attrs(data.data.attrs),
                          nodata=None if nodata is None else float(nodata))
