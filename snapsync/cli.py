"""The `snapsync` command line."""

import click


@click.group()
def main() -> None:
    """snapsync."""
