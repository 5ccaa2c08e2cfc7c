"""Thin entry points: each job is a function plus a subcommand of the `aurorahash` CLI."""
