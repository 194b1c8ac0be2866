"""Steered MD (potstill.sampling.smd): the spring and its work on fixed atoms, energy
conservation of the extended system, agreement with LAMMPS' ``fix smd cvel ... couple``
on n-hexane under AIREBO, and the unthermostatted pulled atoms of the equilibration."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from potstill.lammps_runtime import load_lammps
from potstill.molecules import alkane
from potstill.references import make_calculator
from potstill.references.lammps import create_system, make_pair_potential, to_lammps_geometry
from potstill.sampling.smd import (
    PullingSpring,
    SteeredPull,
    langevin_friction,
    pull,
    thermalize,
)

AIREBO = dict(pair_style="airebo 3.0", potential="CH.airebo", elements=["C", "H"])
ENDS = ([0], [5])  # the terminal carbons of n-hexane
CH3 = [0, 6, 7, 8]  # C0 and its three hydrogens
K = 10.0  # eV/A^2
SPEED = 20.0  # A/ps
TIMESTEP_FS = 0.5
DR = SPEED * TIMESTEP_FS / 1000.0  # A per step: 0.01
# 600 steps pull the spring 6 A: in LAMMPS the tension peaks (22 eV/A) at step ~485, a
# C-C bond breaks by step ~525 (W peaks at 46.6 eV), the fragments then overtake the
# spring. Beyond ~650 steps they fly apart with ~40 eV of kinetic energy and two runs
# differing by round-off diverge chaotically (5e-8 eV at step 300, 2 eV at step 1000).
PULL_STEPS = 600
# steps of smooth stretching, before any bond nears AIREBO's C-C switching region
# (r0 moved 3.75 A, W = 19 eV, tension 15 eV/A)
BEFORE_BREAK = 375


def airebo() -> Calculator:
    return make_calculator("lammps", **AIREBO)


@pytest.fixture(scope="module")
def hexane() -> Atoms:
    """n-Hexane relaxed under AIREBO (terminal C-C 6.43 A)."""
    atoms = alkane(6)
    atoms.calc = airebo()
    BFGS(atoms, logfile=None).run(fmax=0.01, steps=200)
    relaxed = Atoms(atoms.symbols, positions=atoms.positions, pbc=False)
    assert np.abs(atoms.get_forces()).max() < 0.01
    return relaxed


@pytest.fixture(scope="module")
def start(hexane) -> Atoms:
    """Relaxed n-hexane with seeded Maxwell-Boltzmann momenta at 10 K (no drift, no spin)."""
    atoms = hexane.copy()
    MaxwellBoltzmannDistribution(atoms, temperature_K=10.0, rng=np.random.default_rng(4))
    Stationary(atoms)
    ZeroRotation(atoms)
    return atoms


# --- the spring and its work, no dynamics -------------------------------------------


@pytest.mark.parametrize("offset_A", [None, 0.37, -0.52], ids=["r0=r", "compressed", "stretched"])
def test_work_on_fixed_atoms_is_analytic(offset_A):
    """With atoms that never move, f(t) = k (r0_start + v t - r) is linear in time, so
    the trapezoid rule is exact: W = k [(r0_start - r) v t + v^2 t^2 / 2]."""
    atoms = alkane(6)
    positions = atoms.positions.copy()
    k, speed, dt_fs, n = 7.5, 3.0, 0.5, 400
    r = PullingSpring(CH3, [5], k).separation(atoms)[0]
    r0_start = r if offset_A is None else r + offset_A
    spring = PullingSpring(CH3, [5], k, None if offset_A is None else r0_start)
    observer = SteeredPull(atoms, spring, speed_A_per_ps=speed, timestep_fs=dt_fs)
    for _ in range(n):
        observer()
    records = observer.as_arrays()
    vt = speed * np.arange(n + 1) * dt_fs / 1000.0  # A
    expected = k * ((r0_start - r) * vt + vt**2 / 2)
    if offset_A is None:
        assert expected[-1] == pytest.approx(k * vt[-1] ** 2 / 2, rel=1e-12)
    scale = np.abs(expected).max()
    assert scale > 1.0  # 13.5 eV at r0 = r
    np.testing.assert_allclose(records["work"], expected, rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(records["r0"], r0_start + vt, rtol=0, atol=1e-12)
    np.testing.assert_allclose(records["tension"], k * (r0_start + vt - r), atol=1e-9)
    np.testing.assert_allclose(records["distance"], r, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(records["steps"], np.arange(n + 1))
    np.testing.assert_array_equal(atoms.positions, positions)


@pytest.mark.parametrize("group_b", [[5], [5, 17, 18, 19]], ids=["CH3-C", "CH3-CH3"])
@pytest.mark.parametrize("offset_A", [0.4, -0.3])
def test_spring_force_is_minus_gradient_of_its_energy(group_b, offset_A):
    """Mass-weighted centres of mass (C and H masses differ): the force added by
    ``adjust_forces`` is minus the central-difference gradient of
    ``adjust_potential_energy``; it acts only on the two groups, sums to zero, has no
    torque and gives every atom of a group the same acceleration."""
    atoms = alkane(6)
    atoms.rattle(0.05, seed=3)
    spring = PullingSpring(CH3, group_b, 9.0)
    r, unit = spring.separation(atoms)
    spring.r0 = r + offset_A
    forces = np.zeros((len(atoms), 3))
    spring.adjust_forces(atoms, forces)

    h = 1e-5
    gradient = np.zeros_like(forces)
    for i in CH3 + group_b:
        for j in range(3):
            energies = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[i, j] += sign * h
                energies.append(spring.adjust_potential_energy(moved))
            gradient[i, j] = (energies[0] - energies[1]) / (2 * h)
    assert spring.adjust_potential_energy(atoms) == pytest.approx(0.5 * 9.0 * offset_A**2)
    np.testing.assert_allclose(forces, -gradient, rtol=0, atol=1e-8)

    pulled = np.zeros(len(atoms), dtype=bool)
    pulled[CH3 + group_b] = True
    assert not forces[~pulled].any()
    tension = 9.0 * offset_A
    np.testing.assert_allclose(forces[group_b].sum(axis=0), tension * unit, atol=1e-12)
    np.testing.assert_allclose(forces[CH3].sum(axis=0), -tension * unit, atol=1e-12)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.cross(atoms.positions, forces).sum(axis=0), 0.0, atol=1e-11)
    masses = atoms.get_masses()
    for group in (CH3, group_b):
        acceleration = forces[group] / masses[group, None]
        np.testing.assert_allclose(acceleration, acceleration[[0] * len(group)], atol=1e-12)


# --- energy conservation with a still spring ----------------------------------------


def test_extended_energy_is_conserved_with_a_still_spring(start):
    """NVE (velocity Verlet, 0.5 fs, 1000 steps) of n-hexane under AIREBO held by a spring
    0.3 A longer than the chain: kinetic + potential energy including the spring
    (``apply_constraint=True``) stays within 1e-3 eV (measured 3.5e-4 eV, no drift),
    while the spring energy swings by 0.45 eV (between k/2 0.3^2 and ~0), so leaving it
    out of the energy, or a spring force inconsistent with it, breaks the bound."""
    atoms = start.copy()
    atoms.calc = airebo()
    spring = PullingSpring(*ENDS, K, atoms.get_distance(0, 5) + 0.3)
    atoms.set_constraint(spring)
    observer = SteeredPull(atoms, spring, speed_A_per_ps=0.0, timestep_fs=TIMESTEP_FS)
    dynamics = VelocityVerlet(atoms, TIMESTEP_FS * units.fs)
    total, bare, springs = [], [], []

    def record():
        if dynamics.nsteps:
            observer()
        kinetic = atoms.get_kinetic_energy()
        total.append(atoms.get_potential_energy(apply_constraint=True) + kinetic)
        bare.append(atoms.get_potential_energy(apply_constraint=False) + kinetic)
        springs.append(spring.adjust_potential_energy(atoms))

    dynamics.attach(record, interval=1)
    dynamics.run(1000)
    total, bare, springs = map(np.asarray, (total, bare, springs))
    assert len(total) == 1001
    np.testing.assert_allclose(total - bare, springs, atol=1e-12)
    assert springs[0] == pytest.approx(0.5 * K * 0.3**2, rel=1e-9)
    assert np.ptp(springs) > 0.4
    assert np.ptp(bare) > 0.4
    assert np.abs(total - total[0]).max() < 1e-3
    assert abs(total[-100:].mean() - total[:100].mean()) < 1e-4
    records = observer.as_arrays()
    assert not records["work"].any()
    assert np.all(records["r0"] == spring.r0)


# --- agreement with LAMMPS' fix smd -------------------------------------------------


def lammps_fix_smd(start: Atoms, steps: int, path) -> dict[str, np.ndarray]:
    """``fix smd cvel K SPEED couple`` between C0 (fix group) and C5 under AIREBO, NVE
    velocity Verlet (``fix nve``), from the positions and velocities of ``start``.

    How fix_smd.cpp (EXTRA-FIX) defines its output (checked against its source):

    - ``couple <group2> auto auto auto 0.0``: the direction n is recomputed every step
      as the unit vector from the fix group's centre of mass to group2's, and with
      R0 = 0 the force on the fix group is k (r_now - r_old) n (minus that on group2),
      i.e. potstill's spring with r0 = r_old. ``init()`` sets r_old to the current
      separation (so each ``run`` restarts it: one ``run`` is used here).
    - ``post_force`` evaluates the spring with the current r_old, then adds v dt to it,
      so the force at step n (time n dt) uses r0(n dt) = r_start + n v dt: exact
      velocity Verlet for a time-dependent spring. Vector component 5 is therefore the
      rest length of the *next* step.
    - component 4 is the total spring force on the fix group along n,
      k (r_now - r_old) = -tension; component 6 r_now; component 7 the "PMF"
      ``sum_j (f_j . n) v dt`` over steps 0..n (including the setup call), a right
      Riemann sum of -tension v dt, i.e. minus potstill's work.
    """
    potential = make_pair_potential(**AIREBO)
    geometry = to_lammps_geometry(start)
    n = len(start)
    velocities = start.get_velocities() * 1000.0 * units.fs  # A/ps (metal units)
    lmp = load_lammps()
    try:
        create_system(lmp, potential, geometry, potential.types_of(start))
        order = np.asarray(lmp.numpy.extract_atom("id")[:n], dtype=int) - 1
        lmp.numpy.extract_atom("v")[:n] = velocities[order]
        components = " ".join(f"f_smd[{i}]" for i in range(1, 8))
        lmp.commands_list(
            [
                f"group first id {ENDS[0][0] + 1}",
                f"group second id {ENDS[1][0] + 1}",
                f"timestep {TIMESTEP_FS / 1000.0!r}",
                "fix integrate all nve",
                f"fix smd first smd cvel {K!r} {SPEED!r} couple second auto auto auto 0.0",
                f"fix out all ave/time 1 1 1 {components} file {path} format ' %.17g'",
                f"run {steps}",
            ]
        )
    finally:
        lmp.close()
    data = np.loadtxt(path)
    assert data.shape == (steps + 1, 8)
    np.testing.assert_array_equal(data[:, 0], np.arange(steps + 1))
    minus_tension = data[:, 4]
    # right Riemann sum -> trapezoid: subtract half the end terms (f_0 = 0 at r0 = r)
    work = -data[:, 7] + 0.5 * (minus_tension - minus_tension[0]) * DR
    return {
        "work": work,
        "tension": -minus_tension,
        "r0_next": data[:, 5],
        "distance": data[:, 6],
    }


@pytest.fixture(scope="module")
def lammps_run(start, tmp_path_factory):
    return lammps_fix_smd(start, PULL_STEPS, tmp_path_factory.mktemp("smd") / "smd.txt")


@pytest.fixture(scope="module")
def potstill_run(start):
    """:func:`potstill.sampling.smd.pull` as is; taut = 1e12 fs makes its Berendsen
    scaling a factor 1 - O(1e-13) per step, i.e. NVE velocity Verlet."""
    return pull(
        start,
        airebo(),
        pulled=ENDS,
        k_eV_per_A2=K,
        speed_A_per_ps=SPEED,
        steps=PULL_STEPS,
        timestep_fs=TIMESTEP_FS,
        temperature_K=10.0,
        taut_fs=1e12,
    )


def test_lammps_fix_smd_run_breaks_the_chain(lammps_run):
    """The reference run does what the comparison needs: r0 moves at v from the start
    separation, the chain stretches, a bond breaks (the tension collapses) within the
    compared steps."""
    r_start = lammps_run["distance"][0]
    steps = np.arange(PULL_STEPS + 1)
    np.testing.assert_allclose(lammps_run["r0_next"], r_start + (steps + 1) * DR, atol=1e-9)
    assert lammps_run["work"][0] == 0.0
    tension = lammps_run["tension"]
    peak = int(np.argmax(tension))
    assert BEFORE_BREAK < peak < PULL_STEPS
    assert tension[peak] > 20.0 and tension[-1] < 0.5 * tension[peak]
    assert 30.0 < lammps_run["work"].max() < 60.0


def test_pull_reproduces_lammps_fix_smd(lammps_run, potstill_run):
    """Same start, same integrator (Berendsen with taut = 1e12 fs is velocity Verlet):
    :func:`potstill.sampling.smd.pull` follows LAMMPS' fix smd to round-off through the
    bond breaking (measured 5e-5 eV / 4e-5 A at step 600, 5e-8 eV up to step 300; the
    bound leaves room for the chaotic growth after the break), work, tension, distance
    and rest length alike. Without SteeredPull's half-kick (the spring's change within
    a step) W was 0.12 eV high before the break and 3.6 eV at step 600."""
    ase, lmp = potstill_run, lammps_run
    assert len(ase.work) == PULL_STEPS + 1
    np.testing.assert_allclose(ase.r0[1:], lmp["r0_next"][:-1], atol=1e-9)
    np.testing.assert_allclose(ase.work, lmp["work"], atol=1e-3)
    np.testing.assert_allclose(ase.distance, lmp["distance"], atol=1e-3)
    np.testing.assert_allclose(ase.tension, lmp["tension"], atol=1e-2)
    early = slice(0, 301)
    np.testing.assert_allclose(ase.work[early], lmp["work"][early], atol=1e-6)


# --- equilibration: friction and seeds ----------------------------------------------


class NoForces(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


def test_langevin_friction_spares_the_pulled_atoms():
    friction = langevin_friction(20, 0.01, [0, 5])
    assert friction.shape == (20, 1)
    assert np.all(friction[[0, 5]] == 0.0)
    others = np.delete(friction[:, 0], [0, 5])
    np.testing.assert_allclose(others, 0.01 / units.fs, rtol=1e-15)


def test_thermalize_leaves_pulled_atoms_ballistic_without_forces(hexane):
    """Without forces, the Langevin phase moves the pulled atoms (no friction, hence no
    noise) in straight lines at constant speed, while the others are kicked."""
    langevin_steps = 40
    _, trajectory = thermalize(
        hexane,
        NoForces(),
        pulled=[0, 5],
        timestep_fs=0.5,
        temperature_K=300.0,
        langevin_steps=langevin_steps,
        friction_per_fs=0.05,
        berendsen_steps=5,
        taut_fs=10.0,
        seed=11,
    )
    positions = trajectory.positions
    assert len(positions) == langevin_steps + 5 + 1
    curvature = np.abs(np.diff(positions[: langevin_steps + 1], n=2, axis=0)).max(axis=(0, 2))
    assert curvature[[0, 5]].max() < 1e-12
    assert np.delete(curvature, [0, 5]).min() > 1e-5
    first_step = positions[1, [0, 5]] - positions[0, [0, 5]]
    assert np.abs(first_step).max() > 1e-4  # they do move


def test_thermalize_is_reproducible_per_seed(hexane):
    options = dict(
        pulled=[0, 5],
        timestep_fs=0.5,
        temperature_K=10.0,
        langevin_steps=30,
        friction_per_fs=0.01,
        berendsen_steps=10,
        taut_fs=10.0,
    )
    calculator = airebo()
    first, trajectory = thermalize(hexane, calculator, seed=7, **options)
    again, _ = thermalize(hexane, airebo(), seed=7, **options)
    other, _ = thermalize(hexane, calculator, seed=8, **options)
    assert len(trajectory.positions) == 41
    np.testing.assert_allclose(again.positions, first.positions, rtol=0, atol=1e-12)
    np.testing.assert_allclose(again.get_momenta(), first.get_momenta(), rtol=0, atol=1e-12)
    assert np.abs(other.get_momenta() - first.get_momenta()).max() > 1e-3
    assert np.abs(other.positions - first.positions).max() > 1e-4
    assert first.calc is None and np.abs(first.get_momenta()).sum() > 0
