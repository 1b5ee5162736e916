"""The training engine: everything about one run, and the cache of finished runs.

It knows nothing about claims. See README.md for the layout of the house.
"""

__version__ = "0.1.0"
