"""tada: find where text-to-music diffusion models decide musical concepts, and steer them.

The library is usable without Snakemake; the workflow calls the same functions.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
