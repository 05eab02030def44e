"""Backed, dask-backed and distributed data give the same results as in-memory data."""

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import pytest

import tmetoolkit as tmt


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    a = tmt.datasets.simulate(n_samples=2, n_cells=600, seed=3)
    path = tmp_path_factory.mktemp("backed") / "a.h5ad"
    a.write_h5ad(path)
    ref = a.copy()
    tmt.tl.score(ref, "all", chunk_size=250)
    tmt.tl.annotate(ref)
    return a, ref, path


def _check(adata, ref):
    cols = adata.obsm["tmt_scores"].columns  # ref also holds annotate's "<name>_specific" scores
    np.testing.assert_allclose(adata.obsm["tmt_scores"].to_numpy(), ref.obsm["tmt_scores"][cols].to_numpy(),
                               atol=1e-10)


def test_backed_h5ad(reference):
    _, ref, path = reference
    b = ad.read_h5ad(path, backed="r")
    tmt.tl.score(b, "all", chunk_size=250)
    _check(b, ref)
    tmt.tl.annotate(b)
    assert (b.obs["tmt_state"].astype(str) == ref.obs["tmt_state"].astype(str)).all()
    pd.testing.assert_frame_equal(tmt.get.sample_table(b), tmt.get.sample_table(ref))



def test_a_subset_of_a_backed_file_is_refused_before_any_work(reference, monkeypatch):
    """AnnData cannot turn a view of a backed file into an object of its own: every tool says how to load it,
    before the work rather than at the first write."""
    from tmetoolkit._utils import TmtInputError

    _, ref, path = reference
    b = ad.read_h5ad(path, backed="r")
    first = b[b.obs["sample"] == b.obs["sample"].cat.categories[0]]
    monkeypatch.setattr("tmetoolkit.tl._annotate.samples_of", lambda *a, **k: pytest.fail("work started"))
    for tool in (tmt.tl.annotate, tmt.tl.score, tmt.tl.checkpoints, tmt.tl.immunosuppression):
        with pytest.raises(TmtInputError, match=r"to_memory\(\)"):
            tool(first)
    with pytest.raises(TmtInputError, match="backed='r'"):
        tmt.tl.annotate(b, copy=True)
    monkeypatch.undo()
    sub = first.to_memory()  # the way out the message gives
    tmt.tl.annotate(sub)
    same = sub.obs["tmt_lineage"].astype(str) == ref.obs.loc[sub.obs_names, "tmt_lineage"].astype(str)
    assert same.mean() > 0.9  # one sample's cells alone, against both samples' calls

@pytest.mark.parametrize("sparse", [True, False])
def test_dask_array(reference, sparse):
    a, ref, _ = reference
    d = a.copy()
    d.X = da.from_array(a.X if sparse else a.X.toarray(), chunks=(250, -1))
    tmt.tl.score(d, "all", chunk_size=250)
    _check(d, ref)
    tmt.tl.annotate(d)
    assert (d.obs["tmt_state"].astype(str) == ref.obs["tmt_state"].astype(str)).all()
    pd.testing.assert_frame_equal(tmt.get.sample_table(d), tmt.get.sample_table(ref))


def test_local_cluster(reference):
    distributed = pytest.importorskip("distributed")
    a, ref, _ = reference
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster, distributed.Client(cluster):
        d = a.copy()
        d.X = da.from_array(a.X, chunks=(250, -1))
        tmt.tl.score(d, "all", chunk_size=250)
        tmt.tl.annotate(d)
    _check(d, ref)
    assert (d.obs["tmt_state"].astype(str) == ref.obs["tmt_state"].astype(str)).all()


def test_clear_errors(reference, monkeypatch):
    from tmetoolkit._matrix import iter_rows

    a, _, _ = reference
    x = da.from_array(a.X.toarray(), chunks=(250, -1))
    unknown = x[x[:, 0] >= 0]  # boolean indexing leaves unknown chunk sizes (AnnData itself refuses such arrays)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        next(iter_rows(unknown, 250))
    with pytest.raises(ValueError, match="chunk_size"):
        tmt.tl.score(a.copy(), "treg", chunk_size=0)
    big = a.copy()
    big.X = a.X.toarray()
    monkeypatch.setattr("tmetoolkit._matrix._available_memory", lambda: 50e6)  # a machine with 50 MB free
    with pytest.raises(MemoryError, match="smaller chunk_size"):
        tmt.tl.score(big, "treg", chunk_size=1000)
    tmt.tl.score(big, "treg", chunk_size=100)  # a chunk that fits is fine


def _downstream(adata):
    tmt.tl.checkpoints(adata)
    tmt.tl.immunosuppression(adata)
    tmt.tl.resistance_profile(adata)
    tmt.tl.immune_phenotype(adata, sample_key="sample", basis="expression", reference="absolute")
    return adata


@pytest.mark.parametrize("kind", ["backed", "dask"])
def test_downstream_tools_on_lazy_matrices(reference, kind):
    """Checkpoints, immunosuppression, resistance and the expression phenotype (pseudobulk summed chunk by chunk)
    give the same per-sample results on backed and dask-backed matrices as in memory."""
    a, ref, path = reference
    if kind == "backed":
        lazy = ad.read_h5ad(path, backed="r")
    else:
        lazy = a.copy()
        lazy.X = da.from_array(a.X, chunks=(250, -1))
    mem = ref.copy()
    for x in (lazy, mem):
        x.obs[["tmt_lineage", "tmt_state"]] = ref.obs[["tmt_lineage", "tmt_state"]]
        x.uns["tmt_annotate"] = ref.uns["tmt_annotate"]
        _downstream(x)
    for key in ("tmt_checkpoints", "tmt_immunosuppression", "tmt_immune_phenotype"):
        pd.testing.assert_frame_equal(lazy.uns[key]["table"], mem.uns[key]["table"], atol=1e-8, check_dtype=False)
    pd.testing.assert_frame_equal(lazy.uns["tmt_resistance_profile"]["long"], mem.uns["tmt_resistance_profile"]["long"],
                                  atol=1e-8, check_dtype=False)
