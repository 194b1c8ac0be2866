"""Property-based tests (hypothesis): whatever a file or a config holds, potstill either
takes it whole or answers with one PotstillError line, and nothing already stored is
lost. Inputs: extxyz files (truncated, corrupted, zero-volume cells, overlapping atoms,
unknown elements, NaN labels), workflow YAMLs (random sections, keys and values, names
of workflows and references that do not exist) and checkpoints of another layout."""

import os
import string

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import emt_frames
from potstill.errors import PotstillError
from potstill.models import ANIModel, load_checkpoint, save_checkpoint
from potstill.store import Store, read_extxyz
from potstill.workflows import load_config

SETTINGS = settings(
    max_examples=int(os.environ.get("POTSTILL_HYPOTHESIS_EXAMPLES", 60)),
    deadline=None,
    derandomize=True,  # the same examples on every run, so CI is reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _one_line(error: PotstillError) -> None:
    assert str(error).strip() and "\n" not in str(error).strip()


@st.composite
def frames(draw):
    """A few frames, some broken: random cells (some degenerate), atoms that may overlap,
    labels that may be NaN."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 6))
        cell = np.diag([draw(st.sampled_from([0.0, 1e-9, 3.0, 7.5])) for _ in range(3)])
        positions = np.array(
            draw(
                st.lists(st.tuples(*[st.floats(0, 7, allow_nan=False)] * 3), min_size=n, max_size=n)
            )
        )
        atoms = Atoms(
            draw(st.sampled_from(["Ni", "Al"])) + str(n),
            positions=positions,
            cell=cell,
            pbc=draw(st.booleans()),
        )
        atoms.info["emt_energy"] = draw(st.sampled_from([-4.4, float("nan")]))
        atoms.arrays["emt_forces"] = np.zeros((n, 3))
        out.append(atoms)
    return out


@SETTINGS
@given(frames(), st.integers(0, 400), st.binary(max_size=8), st.booleans())
def test_an_extxyz_is_imported_whole_or_refused_in_one_line(tmp_path, batch, cut, noise, corrupt):
    path = tmp_path / "in.xyz"
    write(path, batch, format="extxyz")
    text = path.read_bytes()
    if corrupt:  # truncated and with bytes of noise
        path.write_bytes(text[: min(cut, len(text))] + noise)
    store = Store(tmp_path / "pool.db")
    if len(store) == 0:
        store.add(emt_frames(2))
    before = [a.positions.copy() for a in store.get()]
    try:
        ids = store.import_extxyz(path)
    except PotstillError as error:
        _one_line(error)
        ids = []
    after = store.get()
    assert len(after) == len(before) + len(ids)  # all or nothing
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new.positions)  # nothing stored is lost
    for atoms in after[len(before) :]:
        assert np.isfinite(atoms.info["emt_energy"])


def test_unknown_elements_and_broken_geometry_are_named(tmp_path):
    (tmp_path / "xx.xyz").write_text(
        '1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3 pbc="T T T"\nXx 0 0 0\n'
    )
    with pytest.raises(PotstillError, match="cannot read") as error:
        read_extxyz(tmp_path / "xx.xyz")
    _one_line(error.value)
    for atoms, message in [
        (
            Atoms("Ni2", positions=[[0, 0, 0], [0.05, 0, 0]], cell=[5, 5, 5], pbc=True),
            "overlapping",
        ),
        (Atoms("Ni", cell=[3, 3, 0], pbc=True), "zero volume"),
    ]:
        write(tmp_path / "bad.xyz", atoms, format="extxyz")
        with pytest.raises(PotstillError, match=message) as error:
            read_extxyz(tmp_path / "bad.xyz")
        _one_line(error.value)


SECTIONS = [
    "workflow",
    "name",
    "species",
    "reference",
    "executor",
    "sample",
    "select",
    "model",
    "train",
    "validate",
    "distill",
    "compare",
    "bogus",
]
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=True)
    | st.text(string.printable, max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["kind", "name", "n", "sampler", "preset", "committee", "method", "x"]),
            children,
            max_size=3,
        )
    ),
    max_leaves=6,
)


@SETTINGS
@given(st.dictionaries(st.sampled_from(SECTIONS), VALUES, max_size=5))
def test_any_yaml_is_a_config_or_one_line(tmp_path, raw):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    try:
        config = load_config(path)
    except PotstillError as error:
        _one_line(error)
    else:
        assert config.workflow in ("standard", "distill", "compare-selectors")


@pytest.mark.parametrize(
    "text, message",
    [
        ("workflow: alchemy\n", "unknown workflow 'alchemy'"),
        ("reference: {kind: dft-magic}\n", "unknown reference 'dft-magic'"),
        ("sample: {sampler: wormhole}\n", "unknown sampler 'wormhole'"),
        ("select: {method: fsp}\n", "unknown selection method 'fsp'"),
        ("executor: {kind: threads}\n", "executor"),
        ("sample: [1\n", "not valid YAML"),
    ],
)
def test_names_that_do_not_exist_are_one_line(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(PotstillError, match=message) as error:
        load_config(path)
    _one_line(error.value)


def test_a_checkpoint_of_another_layout_is_one_line(tmp_path):
    model = ANIModel.from_preset("demo", ["Ni"], hidden=(8,))
    save_checkpoint(model, tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["config"]["hidden"] = [16, 4]  # the weights are of another network
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(PotstillError, match="does not match the model it describes") as error:
        load_checkpoint(tmp_path / "other.pt")
    _one_line(error.value)
    payload["dtype"] = "nonsense"
    torch.save(payload, tmp_path / "dtype.pt")
    with pytest.raises(PotstillError, match="no torch dtype"):
        load_checkpoint(tmp_path / "dtype.pt")
