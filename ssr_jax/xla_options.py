"""XLA compiler options for the programs that run for long (the training epoch, evaluation), per backend."""
from __future__ import annotations

import functools
import pathlib

import jax


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The host CPU's feature flags (/proc/cpuinfo; empty where there is none)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


# XLA DebugOptions (accepted by every backend; the xla_cpu_ one is read by the CPU compiler only) that trade run
# speed for compile speed: no LLVM optimisation of the generated code, and on a CPU the loop emitters instead of the
# MLIR fusion emitters, which take about twice as long to compile a training step (benchmarks/README.md, "Short
# runs"). For programs that run once or a few times: a model's initialisation, short runs' steps.
COMPILE_SPEED_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def run_once(function, *args):
    """`function(*args)` as one program compiled with `COMPILE_SPEED_OPTIONS`: for what runs once (a model's
    initialisation, a forward pass or gradient a test compares), where XLA's default optimisation, or eager
    execution's compile per primitive and shape, costs more than the slower code saves."""
    return jax.jit(function).lower(*args).compile(COMPILE_SPEED_OPTIONS)(*args)


def compiler_options(backend: str | None = None, cpu_flags: frozenset[str] | None = None) -> dict:
    """Options for `Lowered.compile` on `backend` (default: JAX's default backend).

    On a CPU with AVX-512, 512-bit vectors: XLA:CPU emits 256-bit ones by default (wide vectors once slowed some
    Intel cores' clocks), which leaves half of each AVX-512 register unused in the elementwise fusions — BatchNorm,
    activations, pooling, Adam — that are a third of a training step here. Elsewhere nothing.
    """
    if (backend or jax.default_backend()) == "cpu" and "avx512f" in (cpu_flags if cpu_flags is not None
                                                                       else _cpu_flags()):
        return {"xla_cpu_prefer_vector_width": 512}
    return {}
