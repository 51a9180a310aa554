"""JAX → ONNX: a function traced to a jaxpr at a symbolic batch size, translated equation by equation into ONNX
operators (opset `OPSET`) with `onnx.helper`.

`to_onnx(jax.make_jaxpr(fn)(example), example)` returns the `onnx.GraphProto` of `fn` (its closed-over arrays, e.g.
weights, become initializers), whose input is `example`'s shape with its symbolic leading dimension as a named ONNX
dimension, and whose outputs are `fn`'s outputs in pytree order. What it translates is a list of JAX primitives
(`_RULES`, plus the call primitives it inlines: jit, custom_jvp_call, custom_vjp_call, jax.checkpoint's); anything
else is an `UnsupportedPrimitive` naming the primitive, never a wrong graph. Equations whose inputs are all
constants (BatchNorm statistics, iota, kernel layouts) are folded with NumPy where `_FOLD` knows them, else left to
the runtime.

Layouts follow JAX's: a convolution or pooling over NHWC operands is transposed to ONNX's NCHW and back around the
operator (ONNX Runtime's graph optimizer cancels the pairs between consecutive layers). Integer indices are clamped
into range before a Gather, as XLA clamps them.
"""
from __future__ import annotations

import itertools
import string
from typing import Any, Callable, Sequence

import jax
import numpy as np
import onnx
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# The IR version that came with opset 17 (onnx 1.12): ONNX Runtime ≥ 1.12 and other runtimes of its age read it.
IR_VERSION = 8
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


class UnsupportedPrimitive(ValueError):
    """A JAX operation this translator has no ONNX rule for; the message names it."""


def _static(shape) -> bool:
    return all(isinstance(d, (int, np.integer)) for d in shape)


class _Graph:
    """The ONNX nodes and initializers being built, and the values of the jaxpr variables (an `np.ndarray` for a
    constant, the name of an ONNX tensor otherwise)."""

    def __init__(self, input_name: str, batch):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._small_constants: dict[tuple, str] = {}
        self._names = itertools.count()
        self.input_name, self.batch = input_name, batch
        self._batch_size: str | None = None

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._names)}"

    def const(self, value) -> str:
        array = np.asarray(value)
        key = (array.dtype.str, array.shape, array.tobytes()) if array.size <= 64 else None
        if key is not None and key in self._small_constants:
            return self._small_constants[key]
        name = self.fresh("const")
        self.initializers.append(numpy_helper.from_array(array, name))
        if key is not None:
            self._small_constants[key] = name
        return name

    def name(self, value) -> str:
        return self.const(value) if isinstance(value, np.ndarray) else value

    def node(self, op: str, inputs: Sequence, outputs: int = 1, **attributes) -> Any:
        names = [self.fresh(op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, [self.name(x) for x in inputs], names, **attributes))
        return names[0] if outputs == 1 else names

    def shape(self, dims) -> Any:
        """An int64 `[rank]` shape for Reshape/Expand: a constant when static, else built from the runtime batch
        size (each symbolic dimension must be k · batch)."""
        if _static(dims):
            return np.asarray(dims, np.int64)
        pieces = []
        for d in dims:
            if isinstance(d, (int, np.integer)):
                pieces.append(np.asarray([d], np.int64))
                continue
            try:
                factor = d // self.batch
                assert isinstance(factor, (int, np.integer)) and factor * self.batch == d
            except Exception:  # noqa: BLE001 -- shape_poly raises several types for a non-multiple
                raise UnsupportedPrimitive(f"dimension {d}: only multiples of the batch size {self.batch} "
                                           "are translated") from None
            pieces.append(self.batch_size() if factor == 1 else self.node("Mul", [self.batch_size(),
                                                                                  np.asarray([factor], np.int64)]))
        return self.node("Concat", pieces, axis=0)

    def batch_size(self) -> str:
        if self._batch_size is None:
            self._batch_size = self.node("Shape", [self.input_name], start=0, end=1)
        return self._batch_size

    def transpose(self, x, perm) -> Any:
        perm = [int(p) for p in perm]
        if perm == sorted(perm):
            return x
        if isinstance(x, np.ndarray):
            return np.transpose(x, perm)
        return self.node("Transpose", [x], perm=perm)

    # ------------------------------------------------------------------------------------------------------------
    def run(self, jaxpr: Jaxpr, consts: Sequence, args: Sequence) -> list:
        env: dict = {}

        def read(atom):
            if isinstance(atom, Literal):
                return np.asarray(atom.val, dtype=atom.aval.dtype)
            return env[atom]

        env.update(zip(jaxpr.constvars, (np.asarray(c) for c in consts)))
        env.update(zip(jaxpr.invars, args))
        for eqn in jaxpr.eqns:
            outputs = self.equation(eqn, [read(atom) for atom in eqn.invars])
            env.update(zip(eqn.outvars, outputs))
        return [read(atom) for atom in jaxpr.outvars]

    def equation(self, eqn, inputs: list) -> list:
        name = eqn.primitive.name
        if name in _CALLS:
            inner = next(eqn.params[key] for key in ("jaxpr", "call_jaxpr", "fun_jaxpr") if key in eqn.params)
            if isinstance(inner, ClosedJaxpr):
                return self.run(inner.jaxpr, inner.consts, inputs)
            return self.run(inner, (), inputs)
        outs = [var.aval for var in eqn.outvars]
        if (name in _FOLD and all(isinstance(x, np.ndarray) for x in inputs)
                and all(_static(aval.shape) for aval in outs)):
            result = _FOLD[name](*inputs, **eqn.params)
            if result.size <= max(4096, sum(x.size for x in inputs)):  # folding must not inflate the file
                return [np.asarray(result, dtype=outs[0].dtype).reshape(outs[0].shape)]
        rule = _RULES.get(name)
        if rule is None:
            raise UnsupportedPrimitive(f"the JAX operation {name!r} has no ONNX translation in ssr_jax.onnx_graph "
                                       "yet; add a rule there")
        result = rule(self, eqn, *inputs)
        return list(result) if isinstance(result, (list, tuple)) else [result]


def _dtype(dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


# ----------------------------------------------------------------------------------------------------------------
# Rules: (graph, eqn, *inputs) -> ONNX tensor name(s)
# ----------------------------------------------------------------------------------------------------------------
_CALLS = {"jit", "custom_jvp_call", "custom_vjp_call", "remat2"}  # remat2: jax.checkpoint
_UNARY = {"neg": "Neg", "exp": "Exp", "log": "Log", "tanh": "Tanh", "logistic": "Sigmoid", "sqrt": "Sqrt",
          "abs": "Abs", "sign": "Sign", "floor": "Floor", "ceil": "Ceil", "erf": "Erf", "sin": "Sin", "cos": "Cos",
          "stop_gradient": "Identity", "copy": "Identity", "copy_p": "Identity"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min",
           "pow": "Pow", "eq": "Equal", "gt": "Greater", "ge": "GreaterOrEqual", "lt": "Less",
           "le": "LessOrEqual"}
_LOGICAL = {"and": "And", "or": "Or", "not": "Not"}  # on booleans; JAX's bitwise forms on integers are refused


def _logical(op):
    def rule(g, eqn, *xs):
        if eqn.invars[0].aval.dtype != np.bool_:
            raise UnsupportedPrimitive(f"bitwise {eqn.primitive.name!r} on {eqn.invars[0].aval.dtype} has no "
                                       "ONNX translation here (booleans only)")
        return g.node(op, xs)
    return rule


def _rsqrt(g, eqn, x):
    return g.node("Reciprocal", [g.node("Sqrt", [x])])


def _one(eqn):
    return np.asarray(1, eqn.invars[0].aval.dtype)


def _integer_pow(g, eqn, x):
    y = eqn.params["y"]
    if y == 1:
        return x
    if y == 2:
        return g.node("Mul", [x, x])
    return g.node("Pow", [x, np.asarray(y, eqn.invars[0].aval.dtype)])


def _round(g, eqn, x):
    if int(eqn.params["rounding_method"]) == 1:  # TO_NEAREST_EVEN, jnp.round's: ONNX Round's own
        return g.node("Round", [x])
    half = np.asarray(0.5, eqn.invars[0].aval.dtype)  # AWAY_FROM_ZERO: sign(x) · floor(|x| + ½)
    return g.node("Mul", [g.node("Sign", [x]), g.node("Floor", [g.node("Add", [g.node("Abs", [x]), half])])])


def _is_finite(g, eqn, x):
    return g.node("Not", [g.node("Or", [g.node("IsInf", [x]), g.node("IsNaN", [x])])])


def _convert(g, eqn, x):
    return g.node("Cast", [x], to=_dtype(eqn.params["new_dtype"]))


def _select_n(g, eqn, which, *cases):
    if len(cases) == 1:
        return cases[0]
    if isinstance(which, np.ndarray) and which.ndim == 0:  # a known choice (e.g. NumPy-style index normalisation)
        return cases[int(which)]
    if len(cases) != 2:
        raise UnsupportedPrimitive(f"select_n with {len(cases)} cases has no ONNX translation here (2 at most)")
    if eqn.invars[0].aval.dtype != np.bool_:
        which = g.node("Cast", [which], to=TensorProto.BOOL)
    return g.node("Where", [which, cases[1], cases[0]])


def _clamp(g, eqn, low, x, high):
    return g.node("Min", [g.node("Max", [x, low]), high])


def _reshape(g, eqn, x):
    return g.node("Reshape", [x, g.shape(eqn.outvars[0].aval.shape)])


def _broadcast_in_dim(g, eqn, x, *dynamic_shape):
    shape, dims = eqn.params["shape"], eqn.params["broadcast_dimensions"]
    operand_shape = eqn.invars[0].aval.shape
    if tuple(operand_shape) == tuple(shape):
        return x
    aligned = [1] * len(shape)
    for axis, dim in zip(dims, operand_shape):
        aligned[axis] = dim
    if tuple(aligned) != tuple(operand_shape):
        x = g.node("Reshape", [x, g.shape(aligned)])
    return g.node("Expand", [x, g.shape(shape)])


def _transpose(g, eqn, x):
    return g.transpose(x, eqn.params["permutation"])


def _rev(g, eqn, x):
    axes = list(eqn.params["dimensions"])
    if not axes:
        return x
    k = len(axes)
    return g.node("Slice", [x, np.full(k, -1, np.int64), np.full(k, INT64_MIN, np.int64), np.asarray(axes, np.int64),
                            np.full(k, -1, np.int64)])


def _slice(g, eqn, x):
    shape = eqn.invars[0].aval.shape
    starts, limits = eqn.params["start_indices"], eqn.params["limit_indices"]
    strides = eqn.params["strides"] or (1,) * len(shape)
    ends = []
    for start, limit, dim in zip(starts, limits, shape):
        if not isinstance(start, (int, np.integer)):
            raise UnsupportedPrimitive(f"slice starting at the symbolic index {start}")
        ends.append(limit if isinstance(limit, (int, np.integer)) else INT64_MAX if limit == dim else None)
        if ends[-1] is None:
            raise UnsupportedPrimitive(f"slice ending at the symbolic index {limit}")
    return g.node("Slice", [x, np.asarray(starts, np.int64), np.asarray(ends, np.int64),
                            np.arange(len(shape), dtype=np.int64), np.asarray(strides, np.int64)])


def _dynamic_slice(g, eqn, x, *starts):
    """Starts clamped into [0, dim − size] as XLA clamps them; each start and dimension may be known only at run
    time (a negative index normalised by the batch size, an argmax)."""
    shape, sizes = eqn.invars[0].aval.shape, eqn.params["slice_sizes"]
    begin, end = [], []
    for start, dim, size in zip(starts, shape, sizes):
        if isinstance(start, np.ndarray) and _static((dim, size)):
            begin.append(np.asarray([np.clip(start, 0, dim - size)], np.int64))
            end.append(begin[-1] + size)
            continue
        start = g.node("Reshape", [g.node("Cast", [start], to=TensorProto.INT64), np.ones(1, np.int64)])
        upper = g.node("Sub", [g.shape([dim]), g.shape([size])])
        begin.append(g.node("Min", [g.node("Max", [start, np.zeros(1, np.int64)]), upper]))
        end.append(g.node("Add", [begin[-1], g.shape([size])]))
    concat = (lambda parts: np.concatenate(parts) if all(isinstance(p, np.ndarray) for p in parts)
              else g.node("Concat", parts, axis=0))
    return g.node("Slice", [x, concat(begin), concat(end), np.arange(len(shape), dtype=np.int64)])


def _dim_as_value(g, eqn):
    value = g.node("Reshape", [g.shape([eqn.params["dim"]]), np.zeros(0, np.int64)])
    return g.node("Cast", [value], to=_dtype(eqn.outvars[0].aval.dtype))


def _concatenate(g, eqn, *xs):
    return g.node("Concat", xs, axis=int(eqn.params["dimension"]))


def _pad(g, eqn, x, value):
    config = eqn.params["padding_config"]
    if any(interior for _, _, interior in config):
        raise UnsupportedPrimitive("pad with interior padding has no ONNX translation here")
    pads = [lo for lo, _, _ in config] + [hi for _, hi, _ in config]
    return g.node("Pad", [x, np.asarray(pads, np.int64), value])


def _split(g, eqn, x):
    sizes = np.asarray(eqn.params["sizes"], np.int64)
    return g.node("Split", [x, sizes], outputs=len(sizes), axis=int(eqn.params["axis"]))


def _dot_general(g, eqn, lhs, rhs):
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs_rank, rhs_rank = len(eqn.invars[0].aval.shape), len(eqn.invars[1].aval.shape)
    if not lb and not rb and tuple(lc) == (lhs_rank - 1,) and tuple(rc) == (0,) and rhs_rank == 2:
        out = g.node("MatMul", [lhs, rhs])
    else:
        letters = iter(string.ascii_letters)
        lhs_letters = [next(letters) for _ in range(lhs_rank)]
        rhs_letters = [None] * rhs_rank
        for left, right in zip((*lc, *lb), (*rc, *rb)):
            rhs_letters[right] = lhs_letters[left]
        rhs_letters = [letter or next(letters) for letter in rhs_letters]
        result = ([lhs_letters[d] for d in lb] + [lhs_letters[d] for d in range(lhs_rank) if d not in (*lc, *lb)]
                  + [rhs_letters[d] for d in range(rhs_rank) if d not in (*rc, *rb)])
        equation = f"{''.join(lhs_letters)},{''.join(rhs_letters)}->{''.join(result)}"
        out = g.node("Einsum", [lhs, rhs], equation=equation)
    want = eqn.outvars[0].aval.dtype
    return out if want == eqn.invars[0].aval.dtype else g.node("Cast", [out], to=_dtype(want))


def _conv(g, eqn, lhs, rhs):
    p = eqn.params
    if any(d != 1 for d in p["lhs_dilation"]) or p["batch_group_count"] != 1:
        raise UnsupportedPrimitive("transposed (input-dilated) or batch-grouped convolutions have no ONNX "
                                   "translation here")
    if any(lo < 0 or hi < 0 for lo, hi in p["padding"]):
        raise UnsupportedPrimitive("convolution with negative padding has no ONNX translation here")
    numbers = p["dimension_numbers"]
    x = g.transpose(lhs, numbers.lhs_spec)
    kernel = g.transpose(rhs, numbers.rhs_spec)
    y = g.node("Conv", [x, kernel], strides=list(p["window_strides"]), dilations=list(p["rhs_dilation"]),
               pads=[lo for lo, _ in p["padding"]] + [hi for _, hi in p["padding"]],
               group=int(p["feature_group_count"]))
    return g.transpose(y, np.argsort(numbers.out_spec))


def _pool(kind: str):
    def rule(g, eqn, x):
        p = eqn.params
        rank = len(eqn.invars[0].aval.shape)
        windows, strides, padding = p["window_dimensions"], p["window_strides"], p["padding"]
        edges = (0, rank - 1)  # NHWC: windows over the spatial dimensions only
        if (rank < 3 or any(windows[d] != 1 or strides[d] != 1 or tuple(padding[d]) != (0, 0) for d in edges)
                or any(d != 1 for d in p["base_dilation"])
                or (kind == "sum" and any(d != 1 for d in p["window_dilation"]))):
            raise UnsupportedPrimitive(f"reduce_window_{kind} other than a pooling over the middle dimensions of "
                                       "a channels-last array has no ONNX translation here")
        spatial = range(1, rank - 1)
        attributes = dict(kernel_shape=[windows[d] for d in spatial], strides=[strides[d] for d in spatial],
                          pads=[padding[d][0] for d in spatial] + [padding[d][1] for d in spatial])
        y = g.transpose(x, (0, rank - 1, *spatial))
        if kind == "max":
            y = g.node("MaxPool", [y], dilations=[p["window_dilation"][d] for d in spatial], **attributes)
        else:  # a window sum: the mean over the whole window (padding counted as zeros) times its size
            y = g.node("AveragePool", [y], count_include_pad=1, **attributes)
            y = g.node("Mul", [y, np.asarray(np.prod(attributes["kernel_shape"]), eqn.invars[0].aval.dtype)])
        return g.transpose(y, (0, *range(2, rank), 1))
    return rule


def _reduce(op: str):
    def rule(g, eqn, x):
        axes = [int(a) for a in eqn.params["axes"]]
        if not axes:
            return x
        boolean = eqn.invars[0].aval.dtype == np.bool_
        if boolean:
            x = g.node("Cast", [x], to=TensorProto.INT32)
        if op == "ReduceSum":  # axes are an input from opset 13, an attribute for the others until opset 18
            y = g.node(op, [x, np.asarray(axes, np.int64)], keepdims=0)
        else:
            y = g.node(op, [x], axes=axes, keepdims=0)
        return g.node("Cast", [y], to=TensorProto.BOOL) if boolean else y
    return rule


def _arg(op: str):
    def rule(g, eqn, x):
        (axis,) = eqn.params["axes"]
        if eqn.invars[0].aval.dtype == np.bool_:
            x = g.node("Cast", [x], to=TensorProto.INT32)
        y = g.node(op, [x], axis=int(axis), keepdims=0, select_last_index=0)  # the first on ties, as JAX
        return g.node("Cast", [y], to=_dtype(eqn.params["index_dtype"]))
    return rule


def _cumsum(g, eqn, x):
    return g.node("CumSum", [x, np.asarray(eqn.params["axis"], np.int64)], reverse=int(eqn.params["reverse"]))


def _cumulative(op: str):
    """cumprod / cummax / cummin: ONNX has no operator; unrolled along the (static) axis as slices, a running
    product/max/min and one Concat."""
    def rule(g, eqn, x):
        axis, length = int(eqn.params["axis"]), eqn.invars[0].aval.shape[eqn.params["axis"]]
        order = range(length - 1, -1, -1) if eqn.params["reverse"] else range(length)
        running, pieces = None, {}
        for i in order:
            piece = g.node("Slice", [x, np.asarray([i], np.int64), np.asarray([i + 1], np.int64),
                                     np.asarray([axis], np.int64)])
            running = piece if running is None else g.node(op, [running, piece])
            pieces[i] = running
        return g.node("Concat", [pieces[i] for i in range(length)], axis=axis)
    return rule


def _gather(g, eqn, operand, indices):
    """One block at constant start indices (a Slice), or `take` along one axis (what NumPy-style indexing with
    integer arrays or scalars produces)."""
    numbers, sizes = eqn.params["dimension_numbers"], eqn.params["slice_sizes"]
    shape = eqn.invars[0].aval.shape
    if (isinstance(indices, np.ndarray) and indices.size == len(numbers.start_index_map)
            and not numbers.operand_batching_dims):
        starts, ends = np.zeros(len(shape), np.int64), []
        for axis, start in zip(numbers.start_index_map, indices.reshape(-1)):
            starts[axis] = start
        for axis, (dim, size) in enumerate(zip(shape, sizes)):
            if isinstance(dim, (int, np.integer)):
                starts[axis] = np.clip(starts[axis], 0, dim - size)  # XLA's clamp of a block's start
                ends.append(starts[axis] + size)
            elif size == dim and starts[axis] == 0:
                ends.append(INT64_MAX)
            else:
                raise UnsupportedPrimitive(f"gather of a block of size {size} along the symbolic dimension {dim}")
        block = g.node("Slice", [operand, starts, np.asarray(ends, np.int64), np.arange(len(shape), dtype=np.int64)])
        return g.node("Reshape", [block, g.shape(eqn.outvars[0].aval.shape)])  # drops/adds only size-1 dimensions
    (axis,) = numbers.start_index_map if len(numbers.start_index_map) == 1 else (None,)
    if (axis is None or tuple(numbers.collapsed_slice_dims) != (axis,) or numbers.operand_batching_dims
            or sizes[axis] != 1 or any(sizes[d] != shape[d] for d in range(len(shape)) if d != axis)):
        raise UnsupportedPrimitive("gather other than indexing one axis has no ONNX translation here")
    index_shape = eqn.invars[1].aval.shape[:-1]
    index = g.node("Reshape", [indices, g.shape(index_shape)])
    if isinstance(shape[axis], (int, np.integer)):  # XLA clamps indices into range; ONNX Gather would fail
        limit = np.asarray(shape[axis] - 1, eqn.invars[1].aval.dtype)
        index = g.node("Min", [g.node("Max", [index, np.zeros((), limit.dtype)]), limit])
    y = g.node("Gather", [operand, index], axis=int(axis))
    # ONNX: operand dims before `axis`, the index dims, operand dims after; JAX: `offset_dims` hold the operand's.
    kept = [d for d in range(len(shape)) if d != axis]
    onnx_position = {d: (d if d < axis else d - 1 + len(index_shape)) for d in kept}
    offset, batch = list(numbers.offset_dims), iter(range(axis, axis + len(index_shape)))
    perm = [onnx_position[kept[offset.index(i)]] if i in offset else next(batch)
            for i in range(len(eqn.outvars[0].aval.shape))]
    return g.transpose(y, perm)


_RULES: dict[str, Callable] = {
    **{name: (lambda op: lambda g, eqn, x: g.node(op, [x]))(op) for name, op in _UNARY.items()},
    **{name: (lambda op: lambda g, eqn, x, y: g.node(op, [x, y]))(op) for name, op in _BINARY.items()},
    **{name: _logical(op) for name, op in _LOGICAL.items()},
    "ne": lambda g, eqn, x, y: g.node("Not", [g.node("Equal", [x, y])]),
    "rem": lambda g, eqn, x, y: g.node("Mod", [x, y], fmod=1),
    "rsqrt": _rsqrt,
    "log1p": lambda g, eqn, x: g.node("Log", [g.node("Add", [x, _one(eqn)])]),
    "expm1": lambda g, eqn, x: g.node("Sub", [g.node("Exp", [x]), _one(eqn)]),
    "square": lambda g, eqn, x: g.node("Mul", [x, x]),
    "integer_pow": _integer_pow,
    "round": _round,
    "is_finite": _is_finite,
    "convert_element_type": _convert,
    "select_n": _select_n,
    "clamp": _clamp,
    "reshape": _reshape,
    "squeeze": _reshape,
    "broadcast_in_dim": _broadcast_in_dim,
    "transpose": _transpose,
    "rev": _rev,
    "slice": _slice,
    "dynamic_slice": _dynamic_slice,
    "dim_as_value": _dim_as_value,
    "concatenate": _concatenate,
    "pad": _pad,
    "split": _split,
    "dot_general": _dot_general,
    "conv_general_dilated": _conv,
    "reduce_window_sum": _pool("sum"),
    "reduce_window_max": _pool("max"),
    "reduce_sum": _reduce("ReduceSum"),
    "reduce_max": _reduce("ReduceMax"),
    "reduce_min": _reduce("ReduceMin"),
    "reduce_prod": _reduce("ReduceProd"),
    "reduce_and": _reduce("ReduceMin"),
    "reduce_or": _reduce("ReduceMax"),
    "argmax": _arg("ArgMax"),
    "argmin": _arg("ArgMin"),
    "cumsum": _cumsum,
    "cumprod": _cumulative("Mul"),
    "cummax": _cumulative("Max"),
    "cummin": _cumulative("Min"),
    "gather": _gather,
}


def _broadcast_fold(x, *, shape, broadcast_dimensions, **_):
    aligned = [1] * len(shape)
    for axis, dim in zip(broadcast_dimensions, x.shape):
        aligned[axis] = dim
    return np.broadcast_to(x.reshape(aligned), shape)


def _iota_fold(*, dtype, shape, dimension, **_):
    aligned = [1] * len(shape)
    aligned[dimension] = shape[dimension]
    return np.broadcast_to(np.arange(shape[dimension], dtype=dtype).reshape(aligned), shape)


# Constant folding with NumPy of what constant subgraphs hold (BatchNorm statistics, kernel layouts, bin ages).
_FOLD: dict[str, Callable] = {
    "add": lambda x, y, **_: x + y, "sub": lambda x, y, **_: x - y, "mul": lambda x, y, **_: x * y,
    "div": lambda x, y, **_: x / y if np.issubdtype(x.dtype, np.floating) else np.trunc(x / y),
    "max": lambda x, y, **_: np.maximum(x, y), "min": lambda x, y, **_: np.minimum(x, y),
    "neg": lambda x, **_: -x, "exp": lambda x, **_: np.exp(x), "log": lambda x, **_: np.log(x),
    "sqrt": lambda x, **_: np.sqrt(x), "rsqrt": lambda x, **_: 1 / np.sqrt(x),
    "integer_pow": lambda x, *, y, **_: x ** y, "square": lambda x, **_: x * x,
    "convert_element_type": lambda x, *, new_dtype, **_: x.astype(new_dtype),
    "reshape": lambda x, *, new_sizes, **_: x.reshape(new_sizes),
    "squeeze": lambda x, *, dimensions, **_: np.squeeze(x, tuple(dimensions)),
    "transpose": lambda x, *, permutation, **_: np.transpose(x, permutation),
    "broadcast_in_dim": _broadcast_fold,
    "iota": _iota_fold,
    "concatenate": lambda *xs, dimension, **_: np.concatenate(xs, axis=dimension),
}


def to_onnx(closed: ClosedJaxpr, example: jax.ShapeDtypeStruct, *, input_name: str, output_names: Sequence[str],
            graph_name: str) -> onnx.GraphProto:
    """The ONNX graph of `closed` (`jax.make_jaxpr(fn)(example)`, one input like `example` with a leading symbolic
    dimension from `jax.export.symbolic_shape`), its outputs named `output_names` in order."""
    graph = _Graph(input_name, example.shape[0])
    results = graph.run(closed.jaxpr, closed.consts, [input_name])
    if len(results) != len(output_names):
        raise ValueError(f"{len(results)} outputs, {len(output_names)} names")

    def value_info(name, aval):
        dims = [d if isinstance(d, (int, np.integer)) else str(d) for d in aval.shape]
        return helper.make_tensor_value_info(name, _dtype(aval.dtype), dims)

    outputs = []
    for name, result, atom in zip(output_names, results, closed.jaxpr.outvars):
        graph.nodes.append(helper.make_node("Identity", [graph.name(result)], [name]))
        outputs.append(value_info(name, atom.aval))
    return helper.make_graph(graph.nodes, graph_name, [value_info(input_name, example)], outputs,
                             initializer=graph.initializers)


def make_model(graph: onnx.GraphProto, *, producer_version: str, doc_string: str) -> onnx.ModelProto:
    """The model around `graph` at `OPSET` / `IR_VERSION`, checked by `onnx.checker`."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ssr_jax",
                              producer_version=producer_version, doc_string=doc_string)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model
