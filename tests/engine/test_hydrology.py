"""The hydrology processes on a small DEM, against pyflwdir called directly and plain numpy.

The DEM is a valley with noise and two pits, on a lon/lat grid (like GEBCO_CENTRAL_ASIA), as a
dask-backed cube; results must not depend on the row order of the y labels.
"""

from __future__ import annotations

import numpy as np
import pyflwdir
import pytest
import xarray as xr
from affine import Affine

from terracube import errors
from terracube.datacube.cube import BANDS, SPATIAL, Dimension, RasterCube, is_lazy
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.processes import hydrology
from terracube.engine.registry import build_registry
from terracube.engine.specs import process_descriptions

NY, NX = 30, 40
RES = 0.01
WEST, NORTH = 74.0, 42.5
TRANSFORM = Affine(RES, 0, WEST, 0, -RES, NORTH)
# D8 code -> (row step, column step)
STEP = {1: (0, 1), 2: (1, 1), 4: (1, 0), 8: (1, -1), 16: (0, -1), 32: (-1, -1), 64: (-1, 0),
        128: (-1, 1)}
IDS = ("fill_sinks", "flow_direction", "flow_accumulation", "stream_network", "catchment")


def dem() -> np.ndarray:
    """A valley draining south-east, with noise, two pits and a no-data corner (north up)."""
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[0:NY, 0:NX]
    z = 2000 - 15.0 * rows - 10.0 * cols + 40 * np.abs(cols - NX / 2) + rng.uniform(0, 8,
                                                                                    (NY, NX))
    z[12, 18] -= 300  # pits
    z[20, 25] -= 400
    z[:3, :3] = np.nan
    return z.astype("float32")


def cube(z: np.ndarray, *, ascending: bool = False, integer_nodata: int | None = None
         ) -> RasterCube:
    ys = NORTH - (np.arange(NY) + 0.5) * RES
    xs = WEST + (np.arange(NX) + 0.5) * RES
    values = z
    if integer_nodata is not None:
        values = np.where(np.isfinite(z), np.round(z), integer_nodata).astype("int16")
    if ascending:  # rows south to north, as in the GEBCO netCDF file
        ys, values = ys[::-1], values[::-1]
    data = xr.DataArray(values[None], dims=["bands", "y", "x"],
                        coords={"bands": ["elevation"], "y": ys, "x": xs}).chunk(
        {"y": 16, "x": 16})
    dims = (Dimension("bands", BANDS), Dimension("y", SPATIAL, "y", 4326),
            Dimension("x", SPATIAL, "x", 4326))
    return RasterCube(data, dims, nodata=integer_nodata)


def plane(result: RasterCube, *, ascending: bool = False) -> np.ndarray:
    assert is_lazy(result)
    values = result.data.isel(bands=0).transpose("y", "x").values
    return values[::-1] if ascending else values


def result_band(result: RasterCube) -> str:
    return str(result.data.coords["bands"].values[0])


def reference(z: np.ndarray):
    missing = ~np.isfinite(z)
    filled, d8 = pyflwdir.dem.fill_depressions(np.where(missing, -9999, z), nodata=-9999)
    d8[missing] = 247
    flw = pyflwdir.from_array(d8, ftype="d8", transform=TRANSFORM, latlon=True)
    return np.where(missing, np.nan, filled), d8, flw


def upstream_cells_by_walking(d8: np.ndarray) -> np.ndarray:
    """Upstream area in cells, counted with plain numpy/Python: walk down from every cell."""
    count = np.zeros(d8.shape, int)
    for row in range(NY):
        for col in range(NX):
            if d8[row, col] == 247:
                continue
            r, c = row, col
            while True:
                count[r, c] += 1
                if d8[r, c] == 0:
                    break
                dr, dc = STEP[int(d8[r, c])]
                r, c = r + dr, c + dc
    return count


@pytest.mark.parametrize("ascending", [False, True])
def test_fill_sinks_and_flow_direction_equal_pyflwdir(ascending: bool) -> None:
    z = dem()
    filled, d8, _ = reference(z)
    got_filled = plane(hydrology.fill_sinks(cube(z, ascending=ascending)), ascending=ascending)
    np.testing.assert_allclose(got_filled, filled, rtol=0, atol=1e-3)
    assert result_band(hydrology.fill_sinks(cube(z))) == "elevation"
    got_d8 = plane(hydrology.flow_direction(cube(z, ascending=ascending)), ascending=ascending)
    np.testing.assert_array_equal(got_d8, d8)
    # numpy: filling only raises cells, and the pits are gone (each has a lower-or-equal exit)
    valid = np.isfinite(z)
    assert (got_filled[valid] >= z[valid] - 1e-3).all()
    assert got_filled[12, 18] > z[12, 18] + 200 and got_filled[20, 25] > z[20, 25] + 300
    padded = np.pad(got_filled, 1, constant_values=-np.inf)  # the edge drains out
    lowest_neighbour = np.min([padded[1 + dr:1 + dr + NY, 1 + dc:1 + dc + NX]
                               for dr, dc in STEP.values()], axis=0)
    lowest_neighbour = np.where(np.isnan(lowest_neighbour), -np.inf, lowest_neighbour)
    assert (lowest_neighbour[valid] <= got_filled[valid] + 1e-3).all()


def test_integer_dem_with_nodata_value() -> None:
    z = dem()
    got = plane(hydrology.flow_direction(cube(z, integer_nodata=-32768)))
    assert (got[:3, :3] == 247).all()
    assert result_band(hydrology.flow_direction(cube(z))) == "flow_direction"
    _, d8, _ = reference(np.where(np.isfinite(z), np.round(z), np.nan).astype("float32"))
    np.testing.assert_array_equal(got, d8)


@pytest.mark.parametrize("ascending", [False, True])
def test_flow_accumulation_counts_every_upstream_cell(ascending: bool) -> None:
    z = dem()
    _, d8, flw = reference(z)
    directions = hydrology.flow_direction(cube(z, ascending=ascending))
    cells = plane(hydrology.flow_accumulation(directions), ascending=ascending)
    walked = upstream_cells_by_walking(d8)
    np.testing.assert_array_equal(cells[d8 != 247], walked[d8 != 247])
    assert np.isnan(cells[d8 == 247]).all()
    # every valid cell drains to exactly one outlet
    assert np.nansum(cells[d8 == 0]) == (d8 != 247).sum()
    km2 = plane(hydrology.flow_accumulation(directions, unit="km2"), ascending=ascending)
    np.testing.assert_allclose(km2[d8 != 247], flw.upstream_area("km2")[d8 != 247], rtol=1e-6)
    # one cell of 0.01 degrees at 42.4 N: about 1.11 km x 0.82 km
    assert 0.85 < np.nanmin(km2) < 0.95


def test_stream_network_is_strahler_order_above_the_threshold() -> None:
    z = dem()
    _, d8, flw = reference(z)
    directions = hydrology.flow_direction(cube(z))
    order = plane(hydrology.stream_network(directions, threshold=20))
    walked = upstream_cells_by_walking(d8)
    streams = (walked >= 20) & (d8 != 247)
    assert ((order > 0) & (order != 255) == streams).all()
    np.testing.assert_array_equal(order[d8 != 247],
                                  flw.stream_order(mask=flw.upstream_area() >= 20)[d8 != 247])
    assert (order[d8 == 247] == 255).all()
    assert order[streams].min() == 1 and order.max() >= 2


@pytest.mark.parametrize("ascending", [False, True])
def test_catchment_is_everything_that_drains_through_the_outlet(ascending: bool) -> None:
    z = dem()
    _, d8, _ = reference(z)
    walked = upstream_cells_by_walking(d8)
    # the outlet: the cell of the biggest river, 5 rows from the bottom
    r, c = NY - 5, int(np.argmax(walked[NY - 5]))
    lon, lat = TRANSFORM * (c + 0.5, r + 0.5)
    directions = hydrology.flow_direction(cube(z, ascending=ascending))
    mask = plane(hydrology.catchment(directions, {"type": "Point", "coordinates": [lon, lat]}),
                 ascending=ascending)
    assert mask.sum() == walked[r, c]
    # numpy: a cell is inside iff walking downstream from it reaches (r, c)
    for start in np.ndindex(NY, NX):
        rr, cc = start
        while (rr, cc) != (r, c) and d8[rr, cc] not in (0, 247):
            dr, dc = STEP[int(d8[rr, cc])]
            rr, cc = rr + dr, cc + dc
        assert mask[start] == ((rr, cc) == (r, c) and d8[start] != 247), start


def test_catchment_snaps_a_point_next_to_the_river() -> None:
    z = dem()
    _, d8, _ = reference(z)
    walked = upstream_cells_by_walking(d8)
    directions = hydrology.flow_direction(cube(z))
    # a point on a ridge cell with a tiny upstream area, snapped down to the first cell >= 50
    r, c = np.argwhere((walked == 1) & (d8 != 247))[len(np.argwhere(walked == 1)) // 2]
    lon, lat = TRANSFORM * (c + 0.5, r + 0.5)
    outlet = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
              "properties": {}}
    unsnapped = plane(hydrology.catchment(directions, outlet))
    assert unsnapped.sum() == 1
    snapped = plane(hydrology.catchment(directions, outlet, snap_threshold=50))
    rr, cc = r, c
    while walked[rr, cc] < 50 and d8[rr, cc] != 0:
        dr, dc = STEP[int(d8[rr, cc])]
        rr, cc = rr + dr, cc + dc
    assert snapped.sum() == walked[rr, cc] and snapped[r, c] == 1


def test_bad_arguments_are_openeo_errors_naming_the_argument() -> None:
    z = dem()
    directions = hydrology.flow_direction(cube(z))
    outside = {"type": "Point", "coordinates": [80.0, 42.4]}
    with pytest.raises(errors.ProcessParameterInvalid, match="outside") as exc:
        hydrology.catchment(directions, outside)
    assert exc.value.argument == "outlet"
    with pytest.raises(errors.ProcessParameterInvalid) as exc:
        hydrology.catchment(directions, {"type": "Polygon", "coordinates": []})
    assert exc.value.argument == "outlet"
    with pytest.raises(errors.ProcessParameterInvalid) as exc:
        hydrology.stream_network(directions, threshold=0)
    assert exc.value.argument == "threshold"
    with pytest.raises(errors.ProcessParameterInvalid) as exc:
        hydrology.flow_accumulation(directions, unit="acres")
    assert exc.value.argument == "unit"
    # elevations where flow directions are expected: said when the values are read
    with pytest.raises(errors.ProcessParameterInvalid, match="flow_accumulation: .*D8 codes"):
        plane(hydrology.flow_accumulation(cube(z)))


def test_a_graph_on_the_evaluator_names_the_failing_node() -> None:
    graph = {
        "dir": {"process_id": "flow_direction", "arguments": {"data": {"from_parameter": "dem"}}},
        "acc": {"process_id": "stream_network", "arguments": {
            "data": {"from_node": "dir"}, "threshold": -1}, "result": True},
    }
    evaluator = Evaluator(Services(registry=build_registry()))
    with pytest.raises(errors.ProcessParameterInvalid) as exc:
        evaluator.run(graph, {"dem": cube(dem())})
    assert exc.value.node_id == "acc" and exc.value.argument == "threshold"
    graph["acc"]["arguments"]["threshold"] = 20
    result = evaluator.run(graph, {"dem": cube(dem())})
    assert plane(result).max() >= 2


def test_listed_in_processes_with_full_metadata() -> None:
    described = {d["id"]: d for d in process_descriptions(build_registry().ids())}
    for pid in IDS:
        d = described[pid]
        assert d["experimental"] is True
        assert d["summary"] and d["description"] and "hydrology" in d["categories"]
        assert d["returns"]["schema"]["subtype"] == "datacube"
        names = [p["name"] for p in d["parameters"]]
        assert names[0] == "data"
        assert all(p["schema"] and p["description"] for p in d["parameters"])
        # the documented parameters are the function's parameters, in order
        impl = build_registry().get(pid)
        assert list(impl.params) == names
