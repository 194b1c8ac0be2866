"""Validation of a model against a reference (seeds 000-002).

- :mod:`potstill.validation.metrics`: energy/force/stress MAE, RMSE, L4 and max error on
  a labeled pool (``error_metrics``, ``pool_pairs``, ``pool_errors``).
- :mod:`potstill.validation.crystals`: relaxed FCC(32)/BCC(54)/HCP(48) bond lengths,
  energies per atom and energy ranking of model and reference (``compare_crystals``,
  ``format_crystal_table``; the cells and their relaxation are :mod:`potstill.crystals`).
- :mod:`potstill.validation.elastic`: C11, C12, C44, K, G, nu by +/-1 % strains
  (``elastic_constants``, ``compare_elastic``, ``format_elastic_table``).

Import the submodule you need; this package imports nothing heavy by itself.
"""
