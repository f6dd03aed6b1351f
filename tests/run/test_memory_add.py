"""Memory updates without retraining: measured neighbours added to a trained run improve its predictions."""

from __future__ import annotations

from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest

from ptrag.api import Model
from ptrag.cli.main import main
from ptrag.data.loading import load_dataset
from ptrag.data.splits import Split
from ptrag.errors import CheckpointError, DataError
from ptrag.run.checkpoint import Checkpoint
from ptrag.run.evidence import add_evidence
from ptrag.training.run import train

# Short training: the evidence path starts as the non-parametric estimate, so what matters here is
# which evidence the memory holds, not a long fit. Every candidate is kept (selection off): on this
# 2-line screen the selector learns within a few dozen steps that the weakly related neighbours it
# sees in training do not help and drops them all, and a run that drops every neighbour cannot use
# new neighbours either (measured: before 0.13 = after 0.13 with the default selector).
OVERRIDES = (
    "retrieval.keep_bias=10",
    "retrieval.sparsity_weight=0",
    "model.hidden_dim=32",
    "model.n_layers=1",
    "model.n_heads=2",
    "retrieval.top_k=8",
    "train.max_steps=60",
    "train.sets_per_batch=8",
    "train.cell_set_len=16",
    "train.val_every=30",
    "train.checkpoint_every=30",
    "train.num_threads=1",
)


def _blocks(screen: Path) -> tuple[list[str], list[str]]:
    """Members of the simulator's two largest complexes, alternately 'measured later' and 'queried'."""
    table = pd.read_csv(screen / "perturbations.csv")
    complexes = table[table["category"] != "other"].groupby("category")["perturbation"].unique()
    largest = complexes.map(len).sort_values(ascending=False).index[:2]
    members = sorted(p for name in largest for p in complexes[name])
    return members[0::2], members[1::2]


def _pearson_delta(prediction, dataset, groups) -> np.ndarray:
    pred = prediction.adata_pred
    pool = dataset.control_means
    values = []
    for cell_type, perturbation in groups:
        rows = ((pred.obs["target_gene"] == perturbation) & (pred.obs["cell_type"] == cell_type)).to_numpy()
        real = dataset.expression.rows(dataset.conditions.cells((cell_type, perturbation)))
        predicted_delta = np.asarray(pred.X[rows]).mean(axis=0) - pool[cell_type]
        values.append(np.corrcoef(predicted_delta, real.mean(axis=0) - pool[cell_type])[0, 1])
    return np.array(values)


@pytest.fixture(scope="module")
def block_run(tiny_screen: Path, tmp_path_factory: pytest.TempPathFactory):
    """A memory run that never saw two whole complexes: every member is held out of every line."""
    measured, queried = _blocks(tiny_screen)
    dataset = load_dataset(tiny_screen / "data.h5ad")
    held = set(measured) | set(queried)
    base = Split.read(tiny_screen / "split.toml")
    fewshot = {
        cell_type: {
            "test": sorted(held & set(dataset.perturbations(cell_type))),
            "val": sorted(set(base.fewshot[cell_type]["val"]) - held),
        }
        for cell_type in dataset.cell_types
    }
    split = Split(name="tiny", fewshot=fewshot)
    root = tmp_path_factory.mktemp("memory-add")
    config = Model.from_config("cpu-small", arm="memory", overrides=OVERRIDES).config
    train(config, dataset, split, root / "run", progress=False)
    return root, dataset, measured, queried


def test_added_measurements_improve_related_queries_without_retraining(block_run, tiny_screen) -> None:
    root, dataset, measured, queried = block_run
    adata = anndata.read_h5ad(tiny_screen / "data.h5ad")
    new = adata[adata.obs["gene"].isin([*measured, "non-targeting"]).to_numpy()].copy()
    model = Model.load(root / "run")
    update = add_evidence(root / "run", model.load_data(new), root / "grown")
    groups = [(c, p) for c, p in dataset.conditions.groups if p in queried]
    assert len(groups) >= 8
    assert update.added == sum(p in measured for _, p in dataset.conditions.groups)

    before = _pearson_delta(_predict(root / "run", dataset, groups), dataset, groups)
    after = _pearson_delta(_predict(root / "grown", dataset, groups), dataset, groups)
    # Same weights, more evidence: the queried complex members now retrieve measured members of their
    # own complex in their own line, and their predicted responses move toward the real ones.
    wins = int((after > before).sum())
    assert after.mean() > before.mean() + 0.1, (before.round(2), after.round(2))
    assert wins >= 0.75 * len(groups), (before.round(2), after.round(2))
    # The weights are the trained ones, untouched.
    old, grown = Checkpoint.load(root / "run"), Checkpoint.load(root / "grown")
    assert old.state_dict.keys() == grown.state_dict.keys()
    assert all(old.state_dict[k].equal(grown.state_dict[k]) for k in old.state_dict)
    assert len(grown.spec.memory) == len(old.spec.memory) + update.added


def _predict(run_dir: Path, dataset, groups):
    """Predictions for exactly ``groups``, whatever the run's own split says."""
    fewshot: dict[str, dict[str, list[str]]] = {}
    for cell_type, perturbation in groups:
        fewshot.setdefault(cell_type, {"val": [], "test": []})["test"].append(perturbation)
    split = Split(name="tiny", fewshot=fewshot)
    return Model.load(run_dir).predict(dataset, split_file=split, progress=False)


def test_memory_add_refuses_duplicates_runs_without_memory_and_its_own_directory(
    block_run, tiny_screen, tmp_path, capsys
) -> None:
    root, dataset, _, _ = block_run
    data = str(tiny_screen / "data.h5ad")
    # The whole screen holds the run's own training measurements: refused without --replace.
    assert main(["memory", "add", str(root / "run"), "--data", data, "--out", str(tmp_path / "a")]) == 2
    assert "--replace" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main(["memory", "add", str(root / "run"), "--data", data, "--out", str(tmp_path / "a"),
                 "--replace"]) == 0  # fmt: skip
    assert "memory add: added" in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="never modified"):
        add_evidence(root / "run", dataset, root / "run")
    # Only a memory arm has evidence rows to grow.
    config = Model.from_config("cpu-small", arm="st", overrides=[*OVERRIDES, "train.max_steps=2"]).config
    train(config, dataset, Split.read(root / "run" / "split.toml"), tmp_path / "st", progress=False)
    with pytest.raises(CheckpointError, match="'st' run, which has no evidence memory"):
        add_evidence(tmp_path / "st", dataset, tmp_path / "c")
    controls_only = anndata.read_h5ad(data)
    controls_only = controls_only[(controls_only.obs["gene"] == "non-targeting").to_numpy()].copy()
    with pytest.raises(DataError, match="no perturbed cells"):
        add_evidence(root / "run", Model.load(root / "run").load_data(controls_only), tmp_path / "b")


def _one_pair(adata: anndata.AnnData, perturbation: str, cell_type: str) -> anndata.AnnData:
    """The cells of (perturbation, cell type) and that cell type's controls."""
    obs = adata.obs
    keep = (obs["cell_line"] == cell_type) & obs["gene"].isin([perturbation, "non-targeting"])
    return adata[keep.to_numpy()].copy()


def _cells_of(prediction, cell_type: str, perturbation: str) -> np.ndarray:
    obs = prediction.adata_pred.obs
    rows = ((obs["target_gene"] == perturbation) & (obs["cell_type"] == cell_type)).to_numpy()
    return np.asarray(prediction.adata_pred.X[rows])


def _lines_of(dataset, perturbation: str) -> list[str]:
    return [c for c, p in dataset.conditions.groups if p == perturbation]


def _in_two_lines(dataset, perturbations: list[str]) -> str:
    return next(p for p in perturbations if len(_lines_of(dataset, p)) >= 2)


def test_an_added_pair_feeds_other_cell_types_but_not_its_own_prediction(block_run, tiny_screen) -> None:
    root, dataset, measured, _ = block_run
    perturbation = _in_two_lines(dataset, measured)
    added, other = _lines_of(dataset, perturbation)[:2]
    new = _one_pair(anndata.read_h5ad(tiny_screen / "data.h5ad"), perturbation, added)
    update = add_evidence(root / "run", Model.load(root / "run").load_data(new), root / "one-pair")
    assert update.added == 1 and update.new_cell_types == ()
    assert "never uses it for that pair's own prediction" in update.message

    groups = [(added, perturbation), (other, perturbation)]
    before = _predict(root / "run", dataset, groups)
    after = _predict(root / "one-pair", dataset, groups)
    # The added pair's own prediction is what it was: a query never retrieves its own measurement.
    own_before, own_after = _cells_of(before, added, perturbation), _cells_of(after, added, perturbation)
    assert own_before.size and np.array_equal(own_after, own_before)
    # The same perturbation in another cell type now retrieves the added row, and moves.
    moved = np.abs(_cells_of(after, other, perturbation) - _cells_of(before, other, perturbation)).max()
    assert moved > 1e-3


def test_memory_add_of_a_new_cell_type_says_what_the_run_can_do_with_it(
    block_run, tiny_screen, tmp_path, capsys
) -> None:
    root, dataset, measured, _ = block_run
    perturbation = _in_two_lines(dataset, measured)
    line = _lines_of(dataset, perturbation)[0]
    new = _one_pair(anndata.read_h5ad(tiny_screen / "data.h5ad"), perturbation, line)
    new.obs["cell_line"] = "hela"
    new.write_h5ad(tmp_path / "hela.h5ad")
    data = str(tmp_path / "hela.h5ad")
    assert main(["memory", "add", str(root / "run"), "--data", data, "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "'hela' are new to the run" in out and "never trained on them" in out
    assert "never uses it for that pair's own prediction" in out
    update = add_evidence(root / "run", Model.load(root / "run").load_data(new), tmp_path / "g2")
    assert update.new_cell_types == ("hela",)
    assert any("'hela' are new to the run" in note for note in update.notes)
    # As the note says: the 'hela' row is evidence for the same perturbation in the trained lines.
    groups = [(line, perturbation)]
    before, after = _predict(root / "run", dataset, groups), _predict(tmp_path / "g", dataset, groups)
    assert np.abs(_cells_of(after, line, perturbation) - _cells_of(before, line, perturbation)).max() > 1e-3


def test_memory_add_help_says_what_an_added_measurement_does_and_does_not_do(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["memory", "add", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "predictions of the same perturbation in other cell types" in text
    assert "does not change: the prediction of an added (perturbation, cell type) pair itself" in text


def test_the_python_api_grows_a_run_as_the_command_does(block_run, tiny_screen, tmp_path) -> None:
    root, _, measured, _ = block_run
    adata = anndata.read_h5ad(tiny_screen / "data.h5ad")
    new = adata[adata.obs["gene"].isin([*measured, "non-targeting"]).to_numpy()].copy()
    model = Model.load(root / "run")
    before = (root / "run" / "checkpoints" / "best.ckpt").read_bytes()
    grown, update = model.add_evidence(new, tmp_path / "grown")
    assert grown.run_dir == tmp_path / "grown"
    assert len(grown.checkpoint.spec.memory) == len(model.checkpoint.spec.memory) + update.added > 0
    assert "never uses it for that pair's own prediction" in update.message
    assert (root / "run" / "checkpoints" / "best.ckpt").read_bytes() == before  # never modified
