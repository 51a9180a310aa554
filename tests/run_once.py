"""`run_once(function, *args)`: `function(*args)` as one program compiled for compile speed.

A test that computes something once (a forward pass to compare, one gradient) spends most of its time compiling:
at XLA's default optimisation, or op by op when called eagerly (a compile per primitive and shape). One jitted
program compiled with the options the trainer uses for its short runs (`xla_options.COMPILE_SPEED_OPTIONS`) costs a
fraction of either and computes the same quantities (to float32 rounding, inside every tolerance these tests use).
"""
import jax

from ssr_jax.xla_options import COMPILE_SPEED_OPTIONS


def run_once(function, *args):
    return jax.jit(function).lower(*args).compile(COMPILE_SPEED_OPTIONS)(*args)
