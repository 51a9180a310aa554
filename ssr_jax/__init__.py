"""ssr_jax: soft stagewise regression (SSR-Net) and DEX ablations in JAX/Flax."""

__version__ = "0.1.0"
