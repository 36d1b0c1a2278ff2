"""How a DHP run averages its replicas unless told otherwise; plain values, so the console reads them without torch.

``benchmarks/dhp_accuracy.py`` (BENCHMARKS.md, "DHP accuracy") chose them on real images: the paper's
plain mean every 100 iterations scored 2-4 points below one machine, because the mean of ``r`` replicas'
updates moves a stage about ``1/r`` as far per mini-batch; summing the updates every 10 iterations
matched it (fixed chains -1.4, dynamic chains +0.3 points), for about 6 % more wall time here.
``--average-every 100 --average-weighting equal`` is the paper's setting.
"""

WEIGHTINGS: tuple[str, ...] = ("equal", "batches", "sum")
"""``equal``: the replicas' plain mean (the paper); ``batches``: weighted by the mini-batches each replica trained;
``sum``: every replica's update since the last average is applied (``engine.dhp.averaging``)."""

AVERAGE_EVERY = 10
"""Iterations between two replica averages."""

AVERAGE_WEIGHTING = "sum"
"""One of ``WEIGHTINGS``."""
