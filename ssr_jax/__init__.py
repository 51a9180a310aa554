"""ssr_jax: soft stagewise regression (SSR-Net) and DEX ablations in JAX/Flax."""
from ssr_jax import host_memory

host_memory.reuse_freed_memory()  # before XLA starts its threads (see host_memory)

__version__ = "0.1.0"
