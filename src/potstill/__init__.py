"""potstill: distil cheap simulations into small training sets for NNPs.

Data flow (see docs/design.md): sample -> pool (store) -> select -> label -> train ->
validate -> report. Units are eV, Angstrom, fs, K and bar from input to output.
"""

__version__ = "0.1.0"
