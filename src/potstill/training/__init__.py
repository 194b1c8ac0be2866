"""Training: seed 001 eq. 3 loss, self energies by regression, committee trainer."""
