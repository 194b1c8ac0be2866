"""Reports: ``summary.json``, PNG plots and an HTML page written to ``<run>/report/``.

Import the submodule you need (:mod:`potstill.report.plots` for parity plots); matplotlib
is only imported when a plot is drawn.
"""
