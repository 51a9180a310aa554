"""ssr_jax: soft stagewise regression (SSR-Net) and DEX ablations in JAX/Flax.

Importing the package changes nothing in the process (no malloc options, matplotlib backend, environment or jax
configuration): programs set what they need at their entry point (the `ssr-jax` CLI: `ssr_jax.cli.main`).
"""
__version__ = "0.1.0"
