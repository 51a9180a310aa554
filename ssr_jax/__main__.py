from ssr_jax.cli import main

main()
