"""Parameters of the ANI atomic environment vector (AEV) and the named presets.

:class:`AEVConfig` describes TorchANI's radial and angular symmetry functions (lengths in
Angstrom, etas in 1/A^2) and builds the TorchANI ``AEVComputer`` that holds them.
:data:`AEV_PRESETS` are the AEVs of the model presets (:mod:`potstill.models.presets`):
``paper`` (seeds 000/001, 6.9 A radial cutoff for metals) and ``demo`` (small, for 2 CPU
cores). Models (:mod:`potstill.models`) and descriptors (:mod:`potstill.descriptors`)
build the same features from the same config.
"""

from __future__ import annotations

from dataclasses import dataclass

from torchani.aev import AEVComputer, ANIAngular, ANIRadial

from potstill.errors import PotstillError

__all__ = ["AEVConfig", "AEV_PRESETS"]


@dataclass(frozen=True)
class AEVConfig:
    """Parameters of the ANI atomic environment vector (lengths in Angstrom).

    Radial shifts are ``radial_num_shifts`` evenly spaced centres from ``radial_start``
    up to (excluding) ``radial_cutoff``; angular shifts likewise; ``angular_num_sections``
    angle centres cover ``[0, pi)`` (TorchANI's ``cover_linearly``). Etas are in 1/A^2.
    """

    radial_cutoff: float = 5.1
    angular_cutoff: float = 3.5
    radial_start: float = 0.8
    radial_eta: float = 19.7
    radial_num_shifts: int = 16
    angular_start: float = 0.8
    angular_eta: float = 12.5
    angular_zeta: float = 14.1
    angular_num_shifts: int = 8
    angular_num_sections: int = 4
    cutoff_fn: str = "cosine"

    def __post_init__(self):
        if not 0 < self.angular_cutoff <= self.radial_cutoff:
            raise PotstillError(
                f"need 0 < angular_cutoff <= radial_cutoff, got {self.angular_cutoff} "
                f"and {self.radial_cutoff} A"
            )
        if self.cutoff_fn not in ("cosine", "smooth"):
            raise PotstillError(f"cutoff_fn must be 'cosine' or 'smooth', got {self.cutoff_fn!r}")

    def build(self, num_species: int) -> AEVComputer:
        """TorchANI ``AEVComputer`` for ``num_species`` elements (pure-PyTorch strategy)."""
        return AEVComputer(
            radial=ANIRadial.cover_linearly(
                start=self.radial_start,
                cutoff=self.radial_cutoff,
                eta=self.radial_eta,
                num_shifts=self.radial_num_shifts,
                cutoff_fn=self.cutoff_fn,
            ),
            angular=ANIAngular.cover_linearly(
                start=self.angular_start,
                cutoff=self.angular_cutoff,
                eta=self.angular_eta,
                zeta=self.angular_zeta,
                num_shifts=self.angular_num_shifts,
                num_sections=self.angular_num_sections,
                cutoff_fn=self.cutoff_fn,
            ),
            num_species=num_species,
            strategy="pyaev",
        )


# "paper": seeds 000/001 (224-192-160, 6.9 A radial cutoff for metals) with ANI-2x etas
# and spacing: ANI-2x puts 16 radial centres on 0.8-5.1 A (0.269 A apart); 23 centres


# "paper": seeds 000/001 (6.9 A radial cutoff for metals) with ANI-2x etas and spacing:
# ANI-2x puts 16 radial centres on 0.8-5.1 A (0.269 A apart); 23 centres on 0.8-6.9 A
# keep that spacing (0.265 A). "demo": small enough to train on 2 CPU cores.
AEV_PRESETS: dict[str, AEVConfig] = {
    "paper": AEVConfig(radial_cutoff=6.9, radial_num_shifts=23),
    "demo": AEVConfig(
        radial_cutoff=5.2,
        radial_eta=10.0,
        radial_num_shifts=12,
        angular_cutoff=3.5,
        angular_eta=4.0,
        angular_num_shifts=4,
        angular_num_sections=4,
    ),
}
