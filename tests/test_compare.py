"""The selector benchmark (`potstill compare-selectors`, issue 5) and the MD stability
classifier (seed 002)."""

import json

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT

from conftest import emt_frames
from potstill.errors import PotstillError
from potstill.frames import get_labels
from potstill.rundir import RunDir
from potstill.store import Store
from potstill.validation.stability import md_stability
from potstill.workflows import compare as compare_module
from potstill.workflows import load_config
from potstill.workflows.compare import read_results


def compare_selectors(config, out, **flags):
    return compare_module.run(config, RunDir(out, **flags))


_TRAIN = dict(
    committee=1,
    max_epochs=3,
    batch_size=8,
    lr=3e-3,
    scheduler_patience=5,
    early_stopping_patience=10,
)


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    """A 30-frame pool and a separate 6-frame test pool of 4-atom EMT Ni cells."""
    root = tmp_path_factory.mktemp("pools")
    pool, test = Store(root / "pool.db"), Store(root / "test.db")
    pool.add(emt_frames(30, seed=3, size=1))
    test.add(emt_frames(6, seed=4, size=1))
    return pool, test


@pytest.fixture(scope="module")
def transfer(tmp_path_factory):
    """A 3-frame transfer pool of 32-atom EMT Ni cells (larger than the pool's)."""
    store = Store(tmp_path_factory.mktemp("transfer") / "transfer.db")
    store.add(emt_frames(3, seed=5, size=2))
    return store


def _write_config(path, pool, test, **compare):
    section = {
        "pool": pool.url,
        "test_pool": test.url,
        "selectors": ["random", "uniform-energy"],
        "budgets": [4, 0.3],
        "seeds": [0, 1],
        "md": {"steps": 20, "interval": 5, "temperature_K": 300.0},
    } | compare
    config = {
        "workflow": "compare-selectors",
        "name": "compare-test",
        "species": ["Ni"],
        "reference": {"kind": "emt", "name": "emt"},
        "executor": "serial",
        "model": {"preset": "demo", "overrides": {"hidden": [8, 4]}},
        "train": _TRAIN,
        "compare": section,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_every_combination_is_trained_evaluated_and_resumed(pools, transfer, tmp_path, monkeypatch):
    pool, test = pools
    config = load_config(_write_config(tmp_path / "c.yaml", pool, test, transfer_pool=transfer.url))
    out = tmp_path / "run"
    calls = []
    real = compare_module._train
    monkeypatch.setattr(
        compare_module, "_train", lambda task, ids: calls.append(task.key) or real(task, ids)
    )
    summary = compare_selectors(config, out)
    rows = read_results(out / "compare" / "results.jsonl")
    assert len(rows) == len(calls) == 2 * 2 * 2
    assert {(r["selector"], r["n_train"], r["seed"]) for r in rows} == {
        (s, n, seed) for s in ("random", "uniform-energy") for n in (4, 9) for seed in (0, 1)
    }
    pool_ids, test_ids = set(pool.ids()), set(test.ids())
    for row in rows:
        for metric in (
            "energy_mae_meV_per_atom",
            "energy_rmse_meV_per_atom",
            "energy_l4_meV_per_atom",
            "force_mae_eV_per_A",
            "force_rmse_eV_per_A",
            "force_l4_eV_per_A",
            "stress_mae_GPa",
        ):
            assert np.isfinite(row[metric]), (row["key"], metric)
        assert (
            row["energy_mae_meV_per_atom"]
            <= row["energy_rmse_meV_per_atom"]
            <= row["energy_l4_meV_per_atom"]
        )
        assert (
            len(set(row["selected_ids"])) == row["n_train"] and set(row["selected_ids"]) <= pool_ids
        )
        assert row["n_test"] == len(test_ids) and isinstance(row["stable"], bool)
        # the transfer pool is evaluated too, under its own keys
        assert row["transfer_n_test"] == 3 and np.isfinite(row["transfer_force_l4_eV_per_A"])
        assert row["transfer_force_rmse_eV_per_A"] != row["force_rmse_eV_per_A"]
        assert row["selector_state"] == {}  # random and uniform-energy learn nothing worth keeping
    # seeds differ, the same seed is reproducible across budgets' keys
    random_4 = {
        r["seed"]: r["selected_ids"]
        for r in rows
        if r["selector"] == "random" and r["n_train"] == 4
    }
    assert random_4[0] != random_4[1]
    # summary and plot
    saved = json.loads((out / "report" / "compare" / "summary.json").read_text())
    assert saved["n_finished"] == 8 and not saved["failed"] and len(saved["table"]) == 4
    entry = saved["table"][0]
    assert entry["seeds"] == [0, 1] and set(entry["energy_l4_meV_per_atom"]) == {"mean", "std"}
    assert 0.0 <= entry["stable_fraction"] <= 1.0
    assert entry["stable_count"] == sum(s["stable"] for s in entry["per_seed"])
    group = [r for r in rows if (r["selector"], r["n_train"]) == (entry["selector"], 4)]
    assert entry["md_steps_survived"] == np.mean([r["stability"]["steps_run"] for r in group])
    assert set(entry["transfer_force_l4_eV_per_A"]) == {"mean", "std"}
    for figure in ("forces", "energy", "transfer", "coverage"):
        assert (out / "report" / "compare" / f"compare_{figure}.png").stat().st_size > 0
    assert summary["table"] == saved["table"] and saved["n_transfer"] == 3
    # versus random: the ratios of the seed means, and the verdicts that follow from them
    for verdict in saved["versus_random"]:
        assert verdict["selector"] == "uniform-energy"
        mine, base = (
            {r["selector"]: r for r in saved["table"] if r["n_train"] == verdict["n_train"]}[s]
            for s in ("uniform-energy", "random")
        )
        for metric, verdict_key in (
            ("force_rmse_eV_per_A", "beats_random_force_rmse"),
            ("force_l4_eV_per_A", "beats_random_force_l4"),
        ):
            ratio = mine[metric]["mean"] / base[metric]["mean"]
            assert verdict[f"{metric}_ratio"] == pytest.approx(ratio)
            assert verdict[verdict_key] == (ratio < 1)
    assert len(saved["versus_random"]) == 2
    markdown = (out / "report" / "compare" / "compare_table.md").read_text()
    assert markdown.count("\n") == 2 + 4 and "| 4 | random |" in markdown
    assert "force L4 (eV/A)" in markdown and "L4 / random" in markdown
    line = next(x for x in markdown.splitlines() if x.startswith("| 4 | uniform-energy |"))
    mine, base = (
        {r["selector"]: r for r in saved["table"] if r["n_train"] == 4}[s]
        for s in ("uniform-energy", "random")
    )
    ratio = mine["force_l4_eV_per_A"]["mean"] / base["force_l4_eV_per_A"]["mean"]
    assert line.rstrip(" |").endswith(f"{ratio:.2f}")
    assert "force L4" in (out / "report" / "compare" / "compare_transfer_table.md").read_text()
    assert (
        "<img src='compare_forces.png'" in (out / "report" / "compare" / "index.html").read_text()
    )
    # coverage: percentiles of the reference energy per atom of what each selector picked
    energy = {
        a.info["store_id"]: get_labels(a, "emt").energy / len(a) for a in pool.get(pool.ids())
    }
    coverage = saved["coverage"]
    assert coverage["pool"]["p50"] == pytest.approx(np.median(list(energy.values())))
    uniform_9 = [
        energy[i]
        for r in rows
        if (r["selector"], r["n_train"]) == ("uniform-energy", 9)
        for i in r["selected_ids"]
    ]
    entry = next(
        c for c in coverage["selected"] if (c["selector"], c["n_train"]) == ("uniform-energy", 9)
    )
    assert entry["p5"] == pytest.approx(np.percentile(uniform_9, 5)) and entry[
        "p95"
    ] == pytest.approx(np.percentile(uniform_9, 95))
    assert entry["below_pool_p25"] == pytest.approx(
        np.mean(np.asarray(uniform_9) < coverage["pool"]["p25"])
    )
    assert (
        len(coverage["selected"]) == 4
        and (out / "report" / "compare" / "compare_coverage.png").stat().st_size > 0
    )
    # a rerun refuses without --resume; with it, finished combinations are skipped
    with pytest.raises(PotstillError, match="--resume"):
        compare_selectors(config, out)
    calls.clear()
    compare_selectors(config, out, resume=True)
    assert calls == [] and len(read_results(out / "compare" / "results.jsonl")) == 8
    # a new seed on resume trains only its combinations
    more = config.compare.model_copy(
        update={"seeds": [0, 1, 2], "selectors": config.compare.selectors[:1], "budgets": [4]}
    )
    compare_selectors(config.model_copy(update={"compare": more}), out, resume=True)
    assert calls == ["random_b4_s2"]


def test_failures_are_recorded_and_retried_on_resume(pools, tmp_path, monkeypatch):
    pool, test = pools
    config = load_config(
        _write_config(
            tmp_path / "c.yaml",
            pool,
            test,
            selectors=["random"],
            budgets=[4],
            seeds=[0],
            md={"enabled": False},
        )
    )
    out = tmp_path / "run"
    real = compare_module._train

    def broken(task, ids):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(compare_module, "_train", broken)
    summary = compare_selectors(config, out)
    assert summary["failed"] == ["random_b4_s0"] and summary["n_finished"] == 0
    assert "out of memory" in (out / "compare" / "failures.jsonl").read_text()
    monkeypatch.setattr(compare_module, "_train", real)
    summary = compare_selectors(config, out, resume=True)
    assert summary["failed"] == [] and summary["n_finished"] == 1


def test_a_held_out_part_of_the_same_store_is_never_selected_from(pools, tmp_path):
    pool, _ = pools
    path = _write_config(
        tmp_path / "c.yaml",
        pool,
        pool,
        selectors=["random", "uniform-energy"],
        budgets=[0.5],
        seeds=[0],
        md={"enabled": False},
    )
    data = yaml.safe_load(path.read_text())
    data["compare"]["pool"] = {"path": pool.url, "stop": 20}
    data["compare"]["test_pool"] = {"path": pool.url, "start": 15}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PotstillError, match="shares 5 frames"):
        compare_selectors(load_config(path), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    data["compare"]["test_pool"] = {"path": pool.url, "start": 20, "stride": 2}
    path.write_text(yaml.safe_dump(data))
    summary = compare_selectors(load_config(path), tmp_path / "run")
    ids = pool.ids()
    rows = read_results(tmp_path / "run" / "compare" / "results.jsonl")
    assert summary["n_pool"] == 20 and summary["n_test"] == 5 and len(rows) == 2
    for row in rows:  # half of the 20 pool frames, none of the held-out ones
        assert (
            row["n_train"] == 10
            and set(row["selected_ids"]) <= set(ids[:20])
            and row["stable"] is None
        )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"selectors": ["random", "nonsense"]}, "unknown selector 'nonsense'"),
        ({"budgets": [64]}, "pool holds 30"),
        ({"budgets": [1.5]}, "pool fraction"),
        (
            {"selectors": [{"name": "fps", "options": {"bogus": 1}}]},
            "bad options for selector 'fps'",
        ),
        ({"md": {"steps": 0}}, "compare.md.steps"),
    ],
)
def test_bad_config_is_one_line_error(pools, tmp_path, change, message):
    pool, test = pools
    path = _write_config(tmp_path / "c.yaml", pool, test, **change)
    with pytest.raises(PotstillError, match=message) as error:
        compare_selectors(load_config(path), tmp_path / "run")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def test_missing_compare_section_is_one_line_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("workflow: compare-selectors\nname: x\n")
    with pytest.raises(PotstillError, match="compare: Field required") as error:
        load_config(path)
    assert "\n" not in str(error.value)


def test_stability_flags_atoms_too_close_and_passes_a_relaxed_crystal():
    crystal = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2)
    stable = md_stability(EMT(), crystal, steps=40, interval=5, temperature_K=300.0, seed=0)
    assert stable["stable"] and stable["steps_run"] == 40 and stable["reason"] == ""
    assert stable["min_distance_A"] > 2.0 and stable["max_force_eV_per_A"] < 20.0
    squeezed = crystal.copy()
    squeezed.positions[1] = squeezed.positions[0] + [0.8, 0.0, 0.0]
    unstable = md_stability(EMT(), squeezed, steps=40, seed=0)
    assert not unstable["stable"] and "0.80 A apart" in unstable["reason"]
    assert unstable["min_distance_A"] == pytest.approx(0.8)


def test_stability_flags_large_forces_and_energy_drift():
    crystal = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2)
    hot = md_stability(
        EMT(), crystal, steps=40, interval=5, temperature_K=300.0, seed=0, max_force_eV_per_A=0.01
    )
    assert not hot["stable"] and "force component" in hot["reason"]
    drifting = md_stability(
        EMT(),
        crystal,
        steps=40,
        interval=5,
        temperature_K=3000.0,
        seed=0,
        max_drift_eV_per_atom=1e-4,
    )
    assert not drifting["stable"] and "drifted" in drifting["reason"]


def test_cli_runs_the_comparison(pools, tmp_path):
    from typer.testing import CliRunner

    from potstill.cli import app

    pool, test = pools
    path = _write_config(
        tmp_path / "c.yaml",
        pool,
        test,
        selectors=["random"],
        budgets=[4],
        seeds=[0],
        md={"steps": 10, "interval": 5},
    )
    result = CliRunner().invoke(
        app, ["compare-selectors", str(path), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 0, result.output
    assert len(read_results(tmp_path / "run" / "compare" / "results.jsonl")) == 1
    assert "compare-selectors" in CliRunner().invoke(app, ["--help"]).output


def test_descriptor_selectors_share_one_aev_cache_across_combinations():
    from potstill.selection import make_selector
    from potstill.workflows import compare

    first = compare._share_descriptor(make_selector("fps"), {})
    second = compare._share_descriptor(make_selector("rnd"), {})
    assert first.descriptor is second.descriptor
    own = compare._share_descriptor(make_selector("fps", aev="demo"), {"aev": "demo"})
    assert own.descriptor is not first.descriptor
    assert not hasattr(compare._share_descriptor(make_selector("random"), {}), "descriptor")


def test_min_pair_distance_counts_periodic_images():
    from ase.build import bulk
    from ase.neighborlist import neighbor_list

    from potstill.validation.stability import min_pair_distance

    one = bulk("Ni", "fcc", a=3.52)  # one atom: its nearest neighbours are its own images
    assert min_pair_distance(one) == pytest.approx(3.52 / np.sqrt(2), abs=1e-12)
    rattled = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2)
    rattled.rattle(0.2, seed=1)
    assert min_pair_distance(rattled) == pytest.approx(
        neighbor_list("d", rattled, 3.0).min(), abs=1e-12
    )
    assert min_pair_distance(rattled, cutoff_A=1.0) == float("inf")


def test_a_selectors_learned_state_is_kept_with_its_result(pools, tmp_path):
    import dataclasses

    pool, test = pools
    config = load_config(_write_config(tmp_path / "c.yaml", pool, test))
    first = compare_module._tasks(config, tmp_path / "run", pool.ids(), test.ids(), [])[0]
    task = dataclasses.replace(
        first,
        selector="committee",
        selector_name="committee",
        n_train=6,
        selector_options={
            "reference": "emt",
            "n_chunks": 3,
            "committee": 2,
            "overrides": {"hidden": [8]},
            "train": {"max_epochs": 2, "batch_size": 8},
        },
    )
    ids, state = compare_module._select(task)
    assert len(set(ids)) == 6 and set(ids) <= set(pool.ids())
    assert [c["picked"] for c in state["chunks"]] == [2, 2, 2] and set(state["timings"]) == {
        "training",
        "scoring",
    }


def test_npt_finds_the_equilibrium_density_from_a_stretched_start():
    """Seed 002's NPT check: MTK NPT with LAMMPS's EAM Ni from a cell stretched by 3 % (volume
    +9 %) settles at the density of the relaxed crystal (100 K: thermal expansion is
    below 0.2 %), and the temperature it records is the thermostat's."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    from potstill.references import make_calculator

    eam = make_calculator("eam-ni")
    relaxed = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2)
    relaxed.calc = eam
    FIRE(FrechetCellFilter(relaxed), logfile=None).run(fmax=1e-4)
    density = relaxed.get_masses().sum() * 1.66053906660 / relaxed.get_volume()
    stretched = relaxed.copy()
    stretched.set_cell(relaxed.cell * 1.03, scale_atoms=True)
    result = md_stability(
        eam,
        stretched,
        ensemble="npt",
        steps=800,
        temperature_K=100.0,
        timestep_fs=4.0,
        pdamp_fs=200.0,
        interval=10,
        record_after=400,
        seed=0,
    )
    assert result["stable"], result["reason"]
    assert result["n_recorded"] == 41
    assert result["density_g_cm3"] == pytest.approx(density, rel=0.005)
    assert result["temperature_K"] == pytest.approx(100.0, rel=0.25)


def test_stability_flags_a_collapsing_cell_and_overheating():
    crystal = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2)
    squeezed = md_stability(
        EMT(),
        crystal,
        ensemble="npt",
        steps=400,
        pressure_bar=2e6,
        pdamp_fs=100.0,
        seed=0,
        max_volume_change=0.1,
    )  # 200 GPa squeezes the cell by more than 10 %
    assert not squeezed["stable"] and "volume changed by a factor 0.8" in squeezed["reason"]
    hot = crystal.copy()
    hot.rattle(0.2, seed=1)  # the potential energy released heats the crystal above 2 x 50 K
    heated = md_stability(
        EMT(), hot, steps=100, interval=5, temperature_K=50.0, seed=0, min_distance_A=1.0
    )
    assert not heated["stable"] and "temperature" in heated["reason"]
    assert heated["max_temperature_K"] > 100.0


def test_density_check_runs_the_models_and_the_reference_once(pools, tmp_path, monkeypatch):
    """Seed 002 Fig. 3: the chosen selector's models (one per seed) and the reference run
    NPT at each temperature; densities are summarised, plotted and not rerun on resume."""
    from potstill.workflows import compare_density

    pool, test = pools
    density = {
        "selector": "random",
        "n_train": 4,
        "temperatures_K": [300.0, 600.0],
        "timestep_fs": 2.0,
        "equilibration_steps": 10,
        "steps": 30,
        "interval": 5,
    }
    config = load_config(
        _write_config(
            tmp_path / "c.yaml", pool, test, selectors=["random"], budgets=[4], density=density
        )
    )
    calls = []
    real = compare_density.run_density
    monkeypatch.setattr(
        compare_density, "run_density", lambda task: calls.append(task.key) or real(task)
    )
    summary = compare_selectors(config, tmp_path / "run")
    assert sorted(calls) == sorted(
        f"{who}_T{t}" for who in ("reference", "random_b4_s0", "random_b4_s1") for t in (300, 600)
    )
    rows = read_results(tmp_path / "run" / "compare" / "density.jsonl")
    reference = {r["temperature_K"]: r for r in rows if r["who"] == "reference"}
    start = test.get(test.ids()[:1])[0]
    start_density = start.get_masses().sum() * 1.66053906660 / start.get_volume()
    for row in reference.values():  # EMT Ni keeps its density within a few % over 40 steps
        assert row["stable"] and row["n_recorded"] == 7
        assert row["density_g_cm3"] == pytest.approx(start_density, rel=0.05)
    table = summary["density"]["table"]
    assert [e["temperature_K"] for e in table] == [300.0, 600.0]
    assert table[0]["reference_g_cm3"] == reference[300.0]["density_g_cm3"]
    assert len(table[0]["models_stable"]) == 2
    report = tmp_path / "run" / "report" / "compare"
    assert (report / "compare_density.png").stat().st_size > 0
    calls.clear()
    compare_selectors(config, tmp_path / "run", resume=True)
    assert calls == []


def test_density_selector_must_be_compared(pools, tmp_path):
    pool, test = pools
    path = _write_config(tmp_path / "c.yaml", pool, test, density={"selector": "rnd", "n_train": 4})
    with pytest.raises(PotstillError, match="density.selector 'rnd' is not among") as error:
        load_config(path)
    assert "\n" not in str(error.value)
