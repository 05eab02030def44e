"""``tmt.tl.compare_groups``: every per-sample feature compared between groups of samples (never of cells)."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from .. import _keys
from .._core.sample.compare import TEST, compare_features, region_features, sample_groups
from .._utils import TmtInputError, missing_key_error, target, warn
from ._sample_features import bulk_samples, samples_of
from ._tables import region_table, sample_table


def compare_groups(
    adata: AnnData,
    *,
    sample_key: str | None,
    group_key: str,
    groups: tuple[str, str] | None = None,
    regions: bool = False,
    min_samples: int = 2,
    copy: bool = False,
) -> AnnData | None:
    """Compare every per-sample feature between two groups of samples, e.g. responders and non-responders.

    The unit is the sample: features are taken from :func:`tmetoolkit.get.sample_table` (composition, mean
    scores, phenotype features, immunosuppression components, checkpoint fractions, resistance flags ...), so
    the number of cells never inflates significance. Counts (``n_cells``, ``checkpoints:n_cd8``,
    ``immunosuppression:n_components`` ...) say how a sample was captured and are not compared. Each other numeric
    feature gets a two-sided Mann-Whitney U test, Benjamini-Hochberg FDR across features, Cliff's delta and the
    difference of group medians.

    Parameters
    ----------
    adata
        Data analysed with tmetoolkit's tools.
    sample_key
        ``obs`` column of samples; ``None`` when every observation is a sample (bulk or pseudobulk, after the
        tools ran with ``bulk=True``).
    group_key
        ``obs`` column of the sample's group (constant within a sample), e.g. ``"response"``. Samples without a
        value (NaN, e.g. response not known) are left out, with a warning.
    groups
        The two groups to compare, first against second (default: the two groups present, sorted).
    regions
        Also compare every per-region feature of :func:`tmetoolkit.get.region_table`, region by region, e.g.
        ``"Stroma|immunosuppression:treg_fraction_cd4"``: for regions of an ``obs`` column that recur across samples
        (pathologist annotations, ``tmt_compartment``), given to the tools as ``region_key``. Each region's value
        is one number per sample, so samples stay the unit.
    min_samples
        Fewest samples per group.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Sets ``uns["tmt_compare_groups"]``: ``params`` and
    ``table`` (one row per feature: n per group, medians, median difference, Cliff's delta, U, p-value, FDR),
    sorted by p-value.
    """
    adata = target(adata, copy)
    for key in (sample_key, group_key):
        if key is not None and key not in adata.obs:
            raise missing_key_error(key, "adata.obs", adata.obs.columns)
    samples = (samples_of(adata, sample_key) if sample_key is not None
               else bulk_samples(adata))
    found = sample_groups(adata.obs[group_key], samples)
    if len(found.mixed):
        msg = (f"{group_key!r} varies within samples ({', '.join(found.mixed[:5])}); it must be one value per "
               "sample.")
        raise TmtInputError(msg)
    if len(found.unknown):  # e.g. patients whose response is not known
        warn(f"{len(found.unknown)} sample(s) without a value in obs[{group_key!r}] left out: "
             f"{', '.join(found.unknown[:5])}.")
    group_of = found.group_of
    present = sorted(group_of.unique())
    if groups is None:
        if len(present) != 2:
            msg = (f"{group_key!r} has {len(present)} group(s) {present}; comparing needs exactly two: "
                   "pass groups=(a, b) (command line: give --group-key a column of two groups)" if len(present) > 2
                   else f"{group_key!r} has only one group ({present}); nothing to compare.")
            raise TmtInputError(msg)
        groups = (present[0], present[1])
    groups = tuple(str(g) for g in groups)  # group values are compared as text: True and "True" are one group
    for g in groups:
        if g not in present:
            raise missing_key_error(g, f"the groups of {group_key!r}", present)
    table = sample_table(adata, sample_key)
    if regions:
        table = table.join(_region_features(adata))
    if not group_of.index.isin(table.index).all():
        msg = ("sample_key=None compares observations as samples (bulk or pseudobulk), but the per-sample results "
               "are not per observation: run the bulk tools (immunosuppression(bulk=True), ...) or pass sample_key=.")
        raise TmtInputError(msg)
    n = [int((group_of == g).sum()) for g in groups]
    if min(n) < min_samples:
        msg = f"each group needs at least {min_samples} samples: {groups[0]}={n[0]}, {groups[1]}={n[1]}."
        raise TmtInputError(msg)
    result = compare_features(table, group_of, groups, min_samples=min_samples)
    if result.empty:
        warn("no per-sample feature could be compared (too few samples with values).")
    adata.uns[_keys.COMPARE_GROUPS] = {
        "params": {"sample_key": sample_key or "", "group_key": group_key, "groups": list(groups), "regions": regions,
                   "test": TEST},
        "table": result.table,
    }
    return adata if copy else None


def _region_features(adata: AnnData) -> pd.DataFrame:
    """Samples x ``"<region>|<feature>"``: the numeric columns of the region table, one column per region name."""
    table = region_table(adata)
    if "region" not in table.columns:
        msg = ("regions=True compares regions that recur across samples: run the tools with region_key= (an obs "
               "column such as pathologist regions or tmt_compartment); tiles differ from sample to sample.")
        raise TmtInputError(msg)
    return region_features(table)
