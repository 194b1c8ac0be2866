"""AEVDescriptor: the model's AEV per atom in float32, invariant under the symmetries of
the frame, cached per frame, read from a lazy store view once."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from conftest import emt_frames
from potstill.aev import AEVConfig
from potstill.descriptors import AEVDescriptor
from potstill.errors import PotstillError
from potstill.models import ANIModel
from potstill.store import Store


def _alloy(seed=0):
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2)
    atoms.symbols[[1, 6, 11]] = "Cu"
    atoms.rattle(0.08, seed=seed)
    return atoms


def test_per_atom_aev_equals_the_model_aev_in_float64():
    frames = [_alloy(0), _alloy(1), bulk("Ni", "fcc", a=3.5).repeat((2, 2, 1))]
    descriptor = AEVDescriptor(["Cu", "Ni"], aev="demo")
    blocks = descriptor.per_atom(frames)
    model = ANIModel(
        ["Cu", "Ni"], aev=ANIModel.from_preset("demo", ["Ni"]).aev_config, hidden=(), seed=0
    ).double()
    expected = model.aev(model.batch(frames)).detach().numpy()
    width = descriptor.n_features
    assert [b.shape for b in blocks] == [(32, width), (32, width), (4, width)]
    assert all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), expected, rtol=1e-4, atol=1e-5)


def test_aev_rows_follow_the_atoms_and_ignore_translations():
    atoms = _alloy(2)
    descriptor = AEVDescriptor(["Cu", "Ni"])
    reference = descriptor(atoms)
    order = np.random.default_rng(0).permutation(len(atoms))
    np.testing.assert_allclose(descriptor(atoms[order]), reference[order], rtol=1e-4, atol=1e-5)
    moved = atoms.copy()
    moved.positions += [0.7, -1.3, 2.1]
    np.testing.assert_allclose(descriptor(moved), reference, rtol=1e-4, atol=1e-5)
    assert not np.allclose(descriptor(_alloy(3)), reference, atol=1e-3)


def test_frames_are_computed_once_and_cached(monkeypatch):
    frames = emt_frames(5)
    descriptor = AEVDescriptor(chunk=2)
    calls = []
    original = descriptor._compute
    monkeypatch.setattr(descriptor, "_compute", lambda fs: calls.append(len(fs)) or original(fs))
    first = descriptor.per_atom(frames)
    again = descriptor.per_atom(frames[::-1])
    assert calls == [2, 2, 1]
    assert all(np.array_equal(a, b) for a, b in zip(first, again[::-1]))
    moved = frames[0].copy()
    moved.positions[0] += 0.1
    descriptor(moved)
    assert calls == [2, 2, 1, 1]


def test_species_are_inferred_and_a_new_element_is_a_clear_error():
    descriptor = AEVDescriptor()
    descriptor.per_atom(emt_frames(2))
    assert descriptor.species == ["Ni"] and descriptor.n_features == 48
    with pytest.raises(PotstillError, match="species="):
        descriptor(_alloy())
    with pytest.raises(PotstillError, match="preset"):
        AEVDescriptor(aev="no-such-preset")
    assert AEVDescriptor(["Ni"], aev=AEVConfig(radial_num_shifts=8)).n_features == 8 + 32


def test_store_view_is_read_in_chunks_and_gives_the_same_aev(tmp_path):
    frames = emt_frames(6)
    store = Store(tmp_path / "pool.db")
    ids = store.add(frames)
    reads = []
    original = store.get
    store.get = lambda ids=None, selection=None: reads.append(len(ids)) or original(ids, selection)
    lazy = store.frames(ids, chunk=4)
    descriptor = AEVDescriptor(["Ni"])
    from_store = descriptor.per_atom(lazy)
    assert reads == [4, 2]  # one pass, chunk by chunk
    fresh = AEVDescriptor(["Ni"]).per_atom(frames)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(from_store, fresh))
    assert torch.get_num_threads() == 1  # tests keep torch to one thread (conftest)


# -- SOAP (DScribe) ---------------------------------------------------------------------
def test_soap_is_invariant_to_rotation_translation_and_atom_order():
    from potstill.descriptors import make_descriptor

    soap = make_descriptor("soap", r_cut=4.5, n_max=4, l_max=3)
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2)
    atoms.rattle(0.1, seed=2)
    base = soap(atoms)
    assert (
        base.shape == (32, soap(atoms).shape[1])
        and base.dtype == np.float32
        and np.isfinite(base).all()
    )
    moved = atoms.copy()
    moved.positions += [0.37, -1.1, 2.05]
    moved.wrap()
    np.testing.assert_allclose(soap(moved), base, rtol=1e-4, atol=1e-6)
    turned = atoms.copy()
    turned.rotate(33, "z", rotate_cell=True)
    np.testing.assert_allclose(soap(turned), base, rtol=1e-4, atol=1e-6)
    order = np.random.default_rng(0).permutation(32)
    np.testing.assert_allclose(soap(atoms[order]), base[order], rtol=1e-4, atol=1e-6)
    # a different environment gives a different vector
    assert np.abs(soap(bulk("Ni", "fcc", a=3.3, cubic=True).repeat(2))[0] - base[0]).max() > 1e-3


def test_soap_unknown_element_and_bad_options_are_one_line_errors():
    from potstill.descriptors import make_descriptor
    from potstill.errors import PotstillError

    soap = make_descriptor("soap", species=["Ni"])
    with pytest.raises(PotstillError, match="outside the descriptor's species"):
        soap(bulk("Cu", "fcc", a=3.6, cubic=True))
    with pytest.raises(PotstillError, match="r_cut > 0"):
        make_descriptor("soap", r_cut=-1.0)
    with pytest.raises(PotstillError, match="unknown descriptor 'soup'"):
        make_descriptor("soup")


def test_rnd_with_soap_descriptors_picks_the_liquid_frame_early():
    from ase.calculators.emt import EMT

    from potstill.frames import labels_from_calculator
    from potstill.selection import make_selector

    frames = emt_frames(30, seed=1)
    liquid = bulk("Ni", "fcc", a=3.60, cubic=True).repeat(2)
    liquid.rattle(0.45, seed=0)
    liquid.calc = EMT()
    frames.append(labels_from_calculator(liquid, "emt"))
    picks = make_selector("rnd", descriptor={"name": "soap", "r_cut": 4.5}).select(
        frames, 3, rng=np.random.default_rng(0)
    )
    assert 30 in picks.tolist()
