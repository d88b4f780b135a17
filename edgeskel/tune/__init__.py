"""`edgeskel tune`: the fastest deployable model for a device, chosen by measurement.

search.py runs the search (resumable stages in `<out>/<recipe>/tune-<device>/`), front.py turns
measured candidates into the Pareto front, the choice and its outputs (table, JSON, plot, recipe).
"""

from edgeskel.tune.search import run_tune

__all__ = ["run_tune"]
