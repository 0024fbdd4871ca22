"""Prometheus metrics (being written: see the monitoring issue). Contract used elsewhere:

    source_call_observed(source, outcome, seconds)   called once per attempt by sources.calls
"""


def source_call_observed(source: str, outcome: str, seconds: float) -> None:
    """One attempt to call `source` ended with `outcome` after `seconds`."""
