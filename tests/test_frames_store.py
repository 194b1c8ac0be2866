"""Frames keep labels per reference; the store round-trips them and never loses data."""

import numpy as np
import pytest
from ase.build import bulk

from conftest import emt_frames
from potstill.errors import InvalidLabelError, MissingLabelError, PotstillError
from potstill.frames import check_elements, get_labels, has_labels, set_labels
from potstill.store import Store


def test_labels_of_two_references_coexist():
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True)
    set_labels(atoms, "eam", energy=-17.8, forces=np.zeros((4, 3)), stress=np.ones(6))
    set_labels(atoms, "dft", energy=-20.1, forces=np.ones((4, 3)))
    assert get_labels(atoms, "eam").energy == -17.8
    assert get_labels(atoms, "dft").energy == -20.1
    assert np.all(get_labels(atoms, "eam", require=("forces",)).forces == 0)
    assert get_labels(atoms, "dft").stress is None
    assert has_labels(atoms, "eam", ("energy", "stress")) and not has_labels(
        atoms, "dft", ("stress",)
    )


def test_full_stress_tensor_is_stored_as_voigt():
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True)
    tensor = np.array([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]])
    set_labels(atoms, "eam", energy=0.0, stress=tensor)
    assert np.allclose(get_labels(atoms, "eam").stress, [1, 2, 3, 4, 5, 6])


def test_nan_labels_are_rejected():
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True)
    forces = np.zeros((4, 3))
    forces[1, 2] = np.nan
    with pytest.raises(InvalidLabelError, match="non-finite forces"):
        set_labels(atoms, "dft", energy=-1.0, forces=forces)
    assert not has_labels(atoms, "dft")
    with pytest.raises(InvalidLabelError, match="shape"):
        set_labels(atoms, "dft", energy=-1.0, forces=np.zeros((3, 3)))


def test_missing_label_names_reference_and_fix():
    atoms = emt_frames(1)[0]
    with pytest.raises(
        MissingLabelError, match=r"no 'dft' label.*potstill label POOL --reference KIND --name dft"
    ):
        get_labels(atoms, "dft")


def test_unknown_element_is_one_clear_error():
    with pytest.raises(PotstillError, match="unknown element 'Xx'"):
        check_elements([], ["Xx"])
    with pytest.raises(PotstillError, match=r"element\(s\) \['Ni'\].*species"):
        check_elements(emt_frames(1), ["Al"])


def test_store_round_trip_keeps_labels_and_provenance(tmp_path):
    frames = emt_frames(3)
    set_labels(frames[0], "dft", energy=-3.0, forces=np.ones((32, 3)))
    store = Store(tmp_path / "pool.db")
    ids = store.add(frames)
    assert len(store) == 3 and ids == store.ids()
    back = store.get(ids)
    for a, b in zip(frames, back):
        assert np.allclose(a.positions, b.positions) and np.allclose(a.cell, b.cell)
        la, lb = get_labels(a, "emt", ("forces", "stress", "energies")), get_labels(b, "emt")
        assert la.energy == lb.energy
        assert np.array_equal(la.forces, lb.forces) and np.array_equal(la.stress, lb.stress)
        assert np.array_equal(la.energies, lb.energies)
        assert b.info["sampler"] == "test" and b.info["temperature_K"] == 300.0
    assert get_labels(back[0], "dft").energy == -3.0 and not has_labels(back[1], "dft")
    assert [a.info["step"] for a in store.get(selection="step>=1")] == [1, 2]


def test_failed_bulk_write_keeps_earlier_frames(tmp_path):
    store = Store(tmp_path / "pool.db")
    store.add(emt_frames(2))
    bad = emt_frames(3, seed=1)
    bad[2].info["id"] = 7  # reserved by ASE db: the whole call must fail
    with pytest.raises(PotstillError, match="reserved"):
        store.add(bad)
    assert len(store) == 2


def test_update_adds_labels_without_touching_others(tmp_path):
    store = Store(tmp_path / "pool.db")
    ids = store.add(emt_frames(2))
    frame = store.get(ids[:1])[0]
    set_labels(frame, "dft", energy=-9.0, forces=np.zeros((32, 3)))
    store.update(ids[:1], [frame])
    again = store.get(ids)
    assert get_labels(again[0], "dft").energy == -9.0
    assert has_labels(again[0], "emt", ("energy", "forces")) and not has_labels(again[1], "dft")
    moved = again[1].copy()
    moved.positions += 0.1
    with pytest.raises(PotstillError, match="different atoms"):
        store.update(ids[1:], [moved])


def test_extxyz_round_trip(tmp_path):
    store = Store(tmp_path / "a.db")
    store.add(emt_frames(3))
    assert store.export_extxyz(tmp_path / "pool.xyz") == 3
    other = Store(tmp_path / "b.db")
    other.import_extxyz(tmp_path / "pool.xyz")
    for a, b in zip(store.get(), other.get()):
        la, lb = (
            get_labels(a, "emt", ("forces", "stress")),
            get_labels(b, "emt", ("forces", "stress")),
        )
        assert la.energy == pytest.approx(lb.energy, abs=1e-10)
        assert np.allclose(la.forces, lb.forces) and np.allclose(la.stress, lb.stress)


def test_corrupt_or_missing_store_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_text("this is not a database")
    with pytest.raises(PotstillError, match="not an SQLite ASE database"):
        Store(junk)
    with pytest.raises(PotstillError, match="does not exist"):
        Store(tmp_path / "missing.db", create=False)
    bad_xyz = tmp_path / "bad.xyz"
    bad_xyz.write_text("3\nnonsense\nNi 0 0\n")
    store = Store(tmp_path / "ok.db")
    with pytest.raises(PotstillError, match="cannot read"):
        store.import_extxyz(bad_xyz)
    assert len(store) == 0


def test_postgresql_url_goes_to_ase_db(tmp_path):
    """A PostgreSQL URL is handed to ASE db's PostgreSQL backend; with no server
    listening the error is one line naming the URL."""
    import socket

    with socket.socket() as sock:  # a local port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://potstill:secret@127.0.0.1:{port}/pool"
    with pytest.raises(
        PotstillError, match=r"cannot open store postgresql://.*(refused|connect)"
    ) as error:
        Store(url)
    assert "\n" not in str(error.value).strip() and "secret" not in str(error.value)


def test_postgresql_round_trip(postgres_url):
    store = Store(postgres_url)
    before = len(store)
    frames = emt_frames(2)
    ids = store.add(frames)
    assert len(store) == before + 2
    back = store.get(ids)
    assert np.array_equal(
        get_labels(back[1], "emt", ("forces",)).forces,
        get_labels(frames[1], "emt", ("forces",)).forces,
    )
