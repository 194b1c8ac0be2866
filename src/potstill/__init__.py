"""potstill: distil cheap simulations into small training sets for NNPs.

Data flow (see docs/design.md): sample -> pool (store) -> select -> label -> train ->
validate -> report. Units are eV, Angstrom, fs, K and bar from input to output.
"""

import os

# torchani warns on import that its optional CUDA extensions are missing; potstill never
# uses them (pure-PyTorch AEV), so silence it unless the user chose otherwise.
os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

__version__ = "0.1.0"
