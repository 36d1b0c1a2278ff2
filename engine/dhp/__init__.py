"""Distributed hybrid parallelism (paper 3.2.2, 3.3): stages, chain scheduling, averaging, simulation, coordination."""
