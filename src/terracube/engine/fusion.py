"""Fusing a pixel-wise callback into one numpy function per chunk.

A callback such as W1's NDVI reducer (`array_element` ×2, `normalized_difference`) or W2's
cloud mask (`array_element`, `eq` ×4, `or` ×3) normally becomes one dask layer per process:
each is its own pass over the chunk with its own no-data bookkeeping (a float cube of
1.0 / 0.0 / NaN after every comparison, decision 0003). When every process of the callback is
one of the pixel-wise processes below, `compile_callback` turns the child graph into one
function of the chunk instead, which the cube process maps over the blocks (one task per
chunk, fused by dask with the read before and the consumers after).

Inside the function, comparisons and logic keep a three-valued boolean as a bool array plus
the no-data mask of its source (`_Bool`): `or(eq(s, 3), eq(s, 8))` is two integer-speed
comparisons and one `|` on bools, and the 1.0 / 0.0 / NaN float cube is made once, at the
end. Comparisons of a band with numbers run on the band's values once per distinct number
set (`isin` for the `or` of several `eq` of the same band).

Same values, same dtypes, same no-data as the processes themselves — checked twice:
`tests/engine/test_fusion.py` compares fused and unfused results on random data with
no-data, and every compiled function is run once on a small probe next to the real callback
before it is used (a mismatch or an error in either falls back to the process-by-process
path, so errors are raised exactly as before).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import math
import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from terracube.datacube.band_reads import Block, IntBand

log = logging.getLogger(__name__)

_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("fusion_enabled", default=True)


@contextmanager
def disabled() -> Iterator[None]:
    """Evaluate process by process (tests compare both paths)."""
    token = _enabled.set(False)
    try:
        yield
    finally:
        _enabled.reset(token)


def is_enabled() -> bool:
    return _enabled.get()


# --- values inside a fused function --------------------------------------------------------------
class _Num:
    """Float cube values, NaN = no-data. A band read as integers (`ints`) becomes float32
    only when something needs its float values (`a`); comparisons with numbers use the
    integers."""

    def __init__(self, a: Any = None, ints: IntBand | None = None) -> None:
        self._a = a
        self.ints = ints

    @property
    def a(self) -> Any:
        if self._a is None and self.ints is not None:
            self._a = self.ints.as_float()
        return self._a


@dataclass
class _Bool:
    """A three-valued boolean: `v` where `nodata` is False, no-data where it is True
    (`nodata` None: none). `dtype` is what the process path would have produced: the float
    dtype of 1.0 / 0.0 / NaN cubes, or bool for arrays that cannot hold no-data."""

    v: Any
    nodata: Any
    dtype: np.dtype

    def masks(self) -> tuple[Any, Any]:
        if self.nodata is None:
            return self.v, ~self.v
        valid = ~self.nodata
        return self.v & valid, ~self.v & valid


class _NotFusable(Exception):
    """The callback uses something the fused path does not cover: use the process path."""


def _materialise(value: Any) -> Any:
    if isinstance(value, _Bool):
        if value.dtype.kind == "b":
            return value.v
        out = value.v.astype(value.dtype)
        if value.nodata is not None:
            np.putmask(out, value.nodata, np.nan)
        return out
    return value.a


def _number_const(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


class _Block:
    """Evaluation state of one call of a fused function: the bands and cached masks."""

    def __init__(self, bands: dict[int, Block]) -> None:
        self.bands = bands
        self._nan: dict[int, np.ndarray] = {}

    def isnan(self, a: np.ndarray) -> np.ndarray:
        key = id(a)
        found = self._nan.get(key)
        if found is None:
            found = self._nan[key] = np.isnan(a)
        return found


# --- the compiled program ---------------------------------------------------------------------
Op = Callable[[_Block, list[Any]], Any]


@dataclass
class _Node:
    op: Op
    inputs: list[Any]  # node ids (str) or constants wrapped as ("const", value)


# The attrs key under which a cube made by a fused function keeps how it was made
# (`FusedCube`), so that `mask` can ask the function for its truth mask directly.
FUSED = "fused_function"


@dataclass(frozen=True)
class FusedCube:
    """Valid only while the cube's data is still the dask array named `name`."""

    name: str
    function: FusedFunction
    inputs: tuple[Any, ...]  # the dask arrays of the function's bands
    # when the function reads its bands itself: the dask array of one of its methods
    # ("truth"), one task per chunk
    reading: Callable[[str], Any] | None = None


class FusedFunction:
    """A callback compiled to a function of numpy blocks: `__call__(*band_blocks)`.

    `bands`: the positions (along the reduced dimension) of the blocks it takes, in order.
    A block is float values with NaN as no-data, or an IntBand (the integers a band was
    read as, with where they are invalid): the function casts it where the callback's
    arithmetic needs floats, and compares it with numbers as integers.
    """

    def __init__(self, nodes: dict[str, _Node], order: list[str], result: str,
                 bands: list[int], key: str) -> None:
        self.nodes = nodes
        self.order = order
        self.result = result
        self.bands = bands
        self.key = key

    def __dask_tokenize__(self) -> str:
        # dask would otherwise pickle the function with its closures to name the layer
        # (60 ms per request for the README example); the compiled graph names it.
        return self.key

    def _evaluate(self, blocks: tuple[Block, ...]) -> Any:
        block = _Block(dict(zip(self.bands, blocks)))
        values: dict[str, Any] = {}
        for nid in self.order:
            node = self.nodes[nid]
            args = [values[i] if isinstance(i, str) else i[1] for i in node.inputs]
            values[nid] = node.op(block, args)
        return values[self.result]

    def __call__(self, *blocks: Block) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(_materialise(self._evaluate(blocks)))

    def truth(self, *blocks: Block) -> np.ndarray:
        """Where the result is true: non-zero and not no-data, as `mask` reads a mask cube
        (`(m != 0) & notnull(m)`), without making the 1.0 / 0.0 / NaN float array first."""
        with np.errstate(all="ignore"):
            value = self._evaluate(blocks)
            if isinstance(value, _Bool):
                return np.asarray(value.v if value.nodata is None else value.v & ~value.nodata)
            a = value.a
            if a.dtype.kind == "b":
                return np.asarray(a)
            return np.asarray((a != 0) & ~np.isnan(a))


# --- process implementations (same numpy calls as the processes) --------------------------------
def _num_operand(block: _Block, value: Any) -> Any:
    """An operand of arithmetic/comparison: an array (NaN = no-data) or a number."""
    if isinstance(value, _Bool):
        return _materialise(value)
    if isinstance(value, _Num):
        return value.a
    return value  # a number constant


def _arith(func: Callable[..., Any]) -> Op:
    def op(block: _Block, args: list[Any]) -> Any:
        return _Num(func(*[_num_operand(block, a) for a in args]))
    return op


def _float_arrays(values: list[Any]) -> list[Any]:
    return [v for v in values if isinstance(v, np.ndarray) and v.dtype.kind == "f"]


# Integers a band may hold exactly in float32, and numbers a comparison with them is done on
# the integers for: a float32 of such a number is an exact double.
_EXACT = 2**24


def _integer_comparison(name: str, values: np.ndarray, number: float) -> np.ndarray:
    """`values <name> number` for integer `values`, as the float32 comparison of the cast
    values gives it (the number rounded to float32, as numpy does for a float32 array and
    a Python number), computed on the integers: `==` needs an integral number, `>` and `<=`
    compare with its floor, `>=` and `<` with its ceiling."""
    c = float(np.float32(number))
    info = np.iinfo(values.dtype)
    if name == "eq":
        if not c.is_integer() or not info.min <= c <= info.max:
            return np.zeros(values.shape, dtype=bool)
        return values == values.dtype.type(int(c))
    k = math.floor(c) if name in ("gt", "lte") else math.ceil(c)
    below, above = k < info.min, k > info.max
    if name == "gt":  # values > k
        if below or above or k == info.max:
            return np.full(values.shape, below)
    elif name == "gte":  # values >= k
        if below or above:
            return np.full(values.shape, below)
    elif name == "lt":  # values < k
        if below or above:
            return np.full(values.shape, above)
    elif name == "lte":  # values <= k
        if below or above or k == info.max:
            return np.full(values.shape, not below)
    bound = values.dtype.type(k)
    return {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
            "lte": operator.le}[name](values, bound)


_FLIPPED = {"eq": "eq", "gt": "lt", "gte": "lte", "lt": "gt", "lte": "gte"}


def _on_integers(name: str, args: list[Any]) -> tuple[IntBand, np.ndarray] | None:
    """A comparison of a band read as integers with a plain number, done on the integers:
    the band and the bool result; None when it is not such a comparison."""
    x, y = args
    if isinstance(x, _Num) and x.ints is not None and type(y) in (int, float):
        band, number, op = x.ints, y, name
    elif isinstance(y, _Num) and y.ints is not None and type(x) in (int, float):
        band, number, op = y.ints, x, _FLIPPED[name]
    else:
        return None
    if not math.isfinite(number) or abs(number) > _EXACT:
        return None
    return band, _integer_comparison(op, band.values, number)


def _compare(func: Callable[[Any, Any], Any], negate: bool = False,
             name: str = "") -> Op:
    def op(block: _Block, args: list[Any]) -> Any:
        found = _on_integers(name, args) if name in _FLIPPED else None
        if found is not None:
            band, result = found
            if negate:
                result = np.logical_not(result)
            # the float path's dtype: the comparison of float32 band values
            return _Bool(result, band.invalid, np.dtype(np.float32))
        x, y = (_num_operand(block, a) for a in args)
        arrays = _float_arrays([x, y])
        if not arrays:
            raise _NotFusable("comparison without cube values")
        result = func(x, y)
        if negate:
            result = np.logical_not(result)
        nodata = None
        for a in arrays:
            nodata = block.isnan(a) if nodata is None else nodata | block.isnan(a)
        return _Bool(result, nodata, np.result_type(*[a.dtype for a in arrays]))
    return op


def _between(exclude_max: bool) -> Op:
    upper = operator.lt if exclude_max else operator.le

    def op(block: _Block, args: list[Any]) -> Any:
        x, lo, hi = args
        a = _num_operand(block, x)
        if lo > hi:
            result = np.zeros(a.shape, dtype=bool)
        else:
            result = (a >= lo) & upper(a, hi)
        return _Bool(result, block.isnan(a), a.dtype)
    return op


def _logic_dtype(values: list[Any]) -> np.dtype:
    dtypes = [v.dtype if isinstance(v, _Bool) else v.a.dtype for v in values]
    if all(d.kind == "b" for d in dtypes):
        return np.dtype(bool)
    return np.result_type(np.float32, *dtypes)


def _as_bool(block: _Block, value: Any) -> _Bool:
    if isinstance(value, _Bool):
        return value
    a = value.a
    if a.dtype.kind == "b":
        return _Bool(a, None, a.dtype)
    return _Bool(a != 0, block.isnan(a), a.dtype)


def _logic(kind: str) -> Op:
    def op(block: _Block, args: list[Any]) -> Any:
        if not all(isinstance(a, (_Bool, _Num)) for a in args):
            raise _NotFusable("logic on constants")
        operands = [_as_bool(block, a) for a in args]
        dtype = _logic_dtype(args)
        if kind == "not":
            (a,) = operands
            return _Bool(~a.v, a.nodata, dtype)
        a, b = operands
        if a.nodata is b.nodata:  # the same no-data pixels (or none): plain bool logic
            v = {"and": operator.and_, "or": operator.or_, "xor": operator.xor}[kind](a.v, b.v)
            return _Bool(v, a.nodata, dtype)
        (at, af), (bt, bf) = a.masks(), b.masks()
        if kind == "and":
            true, false = at & bt, af | bf
        elif kind == "or":
            true, false = at | bt, af & bf
        else:
            true, false = (at & bf) | (af & bt), (at & bt) | (af & bf)
        return _Bool(true, ~(true | false), dtype)
    return op


def _check(func: Callable[[np.ndarray], Any], others: bool) -> Op:
    def op(block: _Block, args: list[Any]) -> Any:
        (value,) = args
        a = _materialise(value) if isinstance(value, _Bool) else value.a
        if a.dtype.kind in "fc":
            return _Bool(func(a), None, np.dtype(bool))
        return _Bool(np.full(a.shape, others), None, np.dtype(bool))
    return op


def _normalized_difference(a: Any, b: Any) -> Any:
    """(a - b) / (a + b), divided in place into the difference (a fresh array) when that
    keeps the dtype: one 16 MB array less per 2048² float32 block (W1's NDVI)."""
    difference, total = np.subtract(a, b), np.add(a, b)
    if isinstance(difference, np.ndarray) and difference.ndim and \
            difference.dtype == np.result_type(difference, total):
        return np.true_divide(difference, total, out=difference)
    return difference / total


_UNARY: dict[str, Callable[..., Any]] = {
    "absolute": np.abs, "sqrt": np.sqrt, "exp": np.exp, "ln": np.log, "sin": np.sin,
    "cos": np.cos, "tan": np.tan, "arctan": np.arctan, "arcsin": np.arcsin,
    "arccos": np.arccos, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh}
_BINARY: dict[str, Callable[..., Any]] = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply,
    "divide": np.true_divide, "normalized_difference": lambda a, b: _normalized_difference(a, b)}
_COMPARE = {"eq": (operator.eq, False), "neq": (operator.eq, True), "gt": (operator.gt, False),
            "gte": (operator.ge, False), "lt": (operator.lt, False), "lte": (operator.le, False)}
_COMPARE_NAME = {"eq": "eq", "neq": "eq", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte"}
_BINARY_PARAMS = {"add": ("x", "y"), "subtract": ("x", "y"), "multiply": ("x", "y"),
                  "divide": ("x", "y"), "normalized_difference": ("x", "y")}


# --- compiling a child graph -------------------------------------------------------------------
class _Compiler:
    def __init__(self, graph: dict[str, Any], labels: list[Any] | None, whole: str | None) -> None:
        self.graph = graph
        self.labels = labels  # the labels of the reduced dimension (reduce_dimension)
        self.whole = whole  # the parameter that is the whole block (apply: "x")
        self.nodes: dict[str, _Node] = {}
        self.order: list[str] = []
        self.bands: list[int] = []
        self._band_nodes: dict[int, str] = {}

    def compile(self) -> FusedFunction:
        results = [nid for nid, node in self.graph.items() if node.get("result")]
        if len(results) != 1:
            raise _NotFusable("no single result node")
        self._visit(results[0], set())
        key = json.dumps([self.graph, self.labels, self.whole], sort_keys=True, default=repr)
        return FusedFunction(self.nodes, self.order, results[0], self.bands,
                             "fused-" + hashlib.sha1(key.encode()).hexdigest())

    def _band(self, position: int) -> str:
        if position not in self._band_nodes:
            nid = f"__band{position}__"
            self.bands.append(position)
            self.nodes[nid] = _Node(_band_op(position), [])
            self.order.append(nid)
            self._band_nodes[position] = nid
        return self._band_nodes[position]

    def _operand(self, raw: Any, seen: set[str]) -> Any:
        if isinstance(raw, dict):
            if set(raw) == {"from_node"}:
                self._visit(raw["from_node"], seen)
                return raw["from_node"]
            if set(raw) == {"from_parameter"} and self.whole is not None and \
                    raw["from_parameter"] == self.whole:
                return self._band(0)
            raise _NotFusable(f"argument {raw!r}")
        if raw is None or _number_const(raw):
            return ("const", raw)
        raise _NotFusable(f"constant {raw!r}")

    def _visit(self, nid: str, seen: set[str]) -> None:
        if nid in self.nodes:
            return
        if nid in seen or nid not in self.graph:
            raise _NotFusable("cycle or unknown node")
        seen = seen | {nid}
        node = self.graph[nid]
        pid = node.get("process_id")
        args = node.get("arguments", {})
        if node.get("namespace") not in (None, "backend", "core"):
            raise _NotFusable("namespaced process")

        def operands(*names: str) -> list[Any]:
            if set(args) - set(names):
                raise _NotFusable(f"{pid}: other arguments")
            return [self._operand(args[n], seen) for n in names]

        if pid == "array_element":
            self._array_element(nid, args)
            return
        if pid in _BINARY:
            inputs = operands(*_BINARY_PARAMS[pid])
            self._no_null(inputs)
            op = _arith(_BINARY[pid])
        elif pid in _UNARY:
            inputs = operands("x")
            self._no_null(inputs)
            op = _arith(_UNARY[pid])
        elif pid in _COMPARE:
            extra = {k: v for k, v in args.items() if k not in ("x", "y")}
            if extra.get("delta") is not None or set(extra) - {"delta", "case_sensitive"}:
                raise _NotFusable("comparison options")
            inputs = operands("x", "y")
            self._no_null(inputs)
            func, negate = _COMPARE[pid]
            op = _compare(func, negate, _COMPARE_NAME[pid])
        elif pid == "between":
            exclude = args.get("exclude_max", False)
            if not isinstance(exclude, bool) or not all(
                    _number_const(args.get(k)) for k in ("min", "max")):
                raise _NotFusable("between bounds")
            inputs = [self._operand(args.get("x"), seen), ("const", args["min"]),
                      ("const", args["max"])]
            if set(args) - {"x", "min", "max", "exclude_max"} or isinstance(inputs[0], tuple):
                raise _NotFusable("between arguments")
            op = _between(exclude)
        elif pid in ("and", "or", "xor"):
            inputs = operands("x", "y")
            op = _logic(pid)
        elif pid == "not":
            inputs = operands("x")
            op = _logic("not")
        elif pid in ("is_nan", "is_nodata"):
            inputs = operands("x")
            op = _check(np.isnan, False)
        elif pid == "is_valid":
            inputs = operands("x")
            op = _check(np.isfinite, True)
        else:
            raise _NotFusable(f"process {pid}")
        if any(isinstance(i, tuple) for i in inputs) and pid in ("and", "or", "xor", "not",
                                                              "is_nan", "is_nodata",
                                                              "is_valid"):
            raise _NotFusable(f"{pid} of a constant")
        self.nodes[nid] = _Node(op, inputs)
        self.order.append(nid)

    @staticmethod
    def _no_null(inputs: list[Any]) -> None:
        if any(isinstance(i, tuple) and i[1] is None for i in inputs):
            raise _NotFusable("null operand")
        if all(isinstance(i, tuple) for i in inputs):
            raise _NotFusable("constants only")

    def _array_element(self, nid: str, args: dict[str, Any]) -> None:
        if self.labels is None or args.get("data") != {"from_parameter": "data"} or \
                args.get("return_nodata", False) is not False or \
                set(args) - {"data", "index", "label", "return_nodata"}:
            raise _NotFusable("array_element")
        index: Any = args.get("index")
        label: Any = args.get("label")
        if (index is None) == (label is None):
            raise _NotFusable("array_element index/label")
        if label is not None:
            matches = [i for i, v in enumerate(self.labels) if _same_label(v, label)]
            if not matches:
                raise _NotFusable("unknown label")
            position = matches[0]
        else:
            if isinstance(index, bool) or not _number_const(index) or \
                    not float(index).is_integer() or not 0 <= int(index) < len(self.labels):
                raise _NotFusable("index")
            position = int(index)
        band = self._band(position)
        self.nodes[nid] = _Node(lambda block, args: args[0], [band])
        self.order.append(nid)


def _band_op(position: int) -> Op:
    def op(block: _Block, args: list[Any]) -> Any:
        value = block.bands[position]
        return _Num(ints=value) if isinstance(value, IntBand) else _Num(value)
    return op


def _same_label(a: Any, b: Any) -> bool:
    if isinstance(a, (np.generic,)):
        a = a.item()
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b) if isinstance(a, str) and isinstance(b, str) else False
    try:
        return bool(a == b) and not (isinstance(a, float) and math.isnan(a))
    except Exception:  # noqa: BLE001
        return False


def compile_graph(graph: dict[str, Any], labels: list[Any] | None = None,
                  whole: str | None = None) -> FusedFunction | None:
    """The child graph as one function of numpy blocks, or None if it is not (only) made of
    pixel-wise processes this module knows. `labels`: of the reduced dimension (the callback
    gets `data` and picks bands with array_element); `whole`: the parameter that is the block
    itself (apply's `x`)."""
    if not is_enabled():
        return None
    try:
        return _Compiler(graph, labels, whole).compile()
    except _NotFusable as exc:
        log.debug("not fused: %s", exc)
        return None


def same_values(a: Any, b: Any) -> bool:
    """Equal arrays, NaN where the other has NaN, same dtype."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))
