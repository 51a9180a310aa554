"""Experiment configs: each module's `get_config(arg)` returns a `ConfigDict`; its docstring gives the command."""
