"""Drivers behind the numbers of simulations/README.md (``python -m simulations``)."""
