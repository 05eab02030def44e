"""Per-sample and per-region tables of everything the tools stored, shared by ``tmt.get`` (which shows them),
``tmt.tl.compare_groups`` (which tests them) and the report."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from .. import _keys
from .._utils import TmtKeyError, in_natural_order, missing_key_error, warn
from ._sample_features import regions_of


def resolve_sample_key(adata: AnnData, sample_key: str | None) -> str | None:
    """The sample column: the one given, the one the tools recorded, ``"sample"``, or ``None`` (one sample)."""
    if sample_key is not None:
        if sample_key not in adata.obs:
            raise missing_key_error(sample_key, "adata.obs", adata.obs.columns)
        return sample_key
    for k, v in adata.uns.items():
        if k.startswith(_keys.PREFIX) and isinstance(v, dict) and isinstance(v.get("params"), dict) \
                and v["params"].get("sample_key") in adata.obs:
            return v["params"]["sample_key"]
    if "sample" in adata.obs:
        return "sample"
    return None


def is_bulk(adata: AnnData) -> bool:
    """Whether a tool ran on bulk or pseudobulk data, where every observation is a sample."""
    return any(isinstance(v, dict) and isinstance(v.get("params"), dict) and bool(v["params"].get("bulk"))
               for k, v in adata.uns.items() if k.startswith(_keys.PREFIX))


# tables whose rows are not samples: images (joined through the phenotype's) and the features compared
NOT_PER_SAMPLE = (_keys.COMPARTMENTS, _keys.COMPARE_GROUPS)


def sample_table(adata: AnnData, sample_key: str | None = None) -> pd.DataFrame:
    """One tidy row per sample with everything tmetoolkit computed about it.

    Columns are prefixed by their origin: ``n_cells`` (not for bulk samples); ``frac_lineage:<label>`` and
    ``frac_state:<label>`` for composition (when :func:`tmetoolkit.tl.annotate` ran); ``score:<signature>`` for
    mean signature scores; and the columns of every per-sample table stored under ``uns["tmt_<tool>"]["table"]``
    (phenotype, features, components ...), prefixed with the tool name. A tool's table made per another sample
    column is left out, with a warning naming that column.

    Parameters
    ----------
    adata
        Annotated data.
    sample_key
        ``obs`` column of sample identifiers; default: the one the tools recorded, else ``"sample"``; after
        tools ran on bulk data (``bulk=True``, or ``immune_phenotype`` without ``sample_key``) every observation
        is a sample; else all cells form one sample called ``"all"``.

    Returns
    -------
    One row per sample, indexed by sample name; nothing is written into ``adata``.
    """
    key = resolve_sample_key(adata, sample_key)
    bulk = not key and is_bulk(adata)
    if key:
        samples = adata.obs[key].astype(str)
    elif bulk:
        samples = pd.Series(adata.obs_names.astype(str), index=adata.obs_names)
    else:
        samples = pd.Series("all", index=adata.obs_names)
    # an observation that is a sample has no cells to count
    parts = [pd.DataFrame(index=pd.Index(pd.unique(samples)))] if bulk else [
        samples.value_counts().rename("n_cells").to_frame()]
    for col, prefix in ((_keys.LINEAGE, "frac_lineage"), (_keys.STATE, "frac_state")):
        if col in adata.obs:
            frac = pd.crosstab(samples, adata.obs[col].astype(str), normalize="index")
            parts.append(frac.add_prefix(f"{prefix}:"))
    if _keys.SCORES in adata.obsm:
        mean = pd.DataFrame(adata.obsm[_keys.SCORES], index=adata.obs_names).groupby(samples.values).mean()
        parts.append(mean.add_prefix("score:"))
    other, stale = {}, []
    for name, v in adata.uns.items():
        if name.startswith(_keys.PREFIX) and isinstance(v, dict) and isinstance(v.get("table"), pd.DataFrame):
            tab = v["table"]
            made_per = str(v.get("params", {}).get("sample_key") or "")
            if tab.index.astype(str).isin(samples.unique()).all():
                parts.append(tab.add_prefix(f"{name[4:]}:"))
            elif name in NOT_PER_SAMPLE:
                continue
            elif made_per == str(key or ""):  # the same samples, some without cells here: a subset of the data
                stale.append(name)
            else:
                other[name] = made_per or "each observation"
    if other:
        made = ", ".join(f"{k} (per {w!r})" for k, w in other.items())
        warn(f"left out of the table per {key or 'sample'!r}: {made}; run those tools with the same sample_key, or "
             "pass it here")
    if stale:
        warn(f"left out of the table: {', '.join(stale)}, whose tables hold samples without cells in these data (a "
             "subset of the data they were made on); rerun those tools on these cells")
    out = pd.concat(parts, axis=1)
    out.index.name = key or "sample"
    return in_natural_order(out)


REGION_TOOLS = (_keys.IMMUNE_PHENOTYPE, _keys.IMMUNOSUPPRESSION, _keys.RESISTANCE_PROFILE)


def region_table(adata: AnnData) -> pd.DataFrame:
    """One tidy row per tissue region with everything tmetoolkit computed about it.

    Regions are those of ``region_key`` (pathologist annotations, niches) given to
    :func:`tmetoolkit.tl.immune_phenotype`, :func:`tmetoolkit.tl.immunosuppression` or
    :func:`tmetoolkit.tl.resistance_profile`, named ``"<sample>:<region>"``; without a ``region_key`` the tiles of the
    spatial phenotype. Columns: ``sample``, ``region``, ``n_cells`` and the composition (``frac_lineage:<label>``,
    ``frac_state:<label>``) where regions come from an ``obs`` column, then each tool's per-region table prefixed
    with the tool name (``immune_phenotype:phenotype``, ``immunosuppression:composite``,
    ``resistance_profile:<id>`` with 1 flagged, 0 not flagged, NaN not assessable; ids in ``tmt.tl.mechanisms()``).

    Parameters
    ----------
    adata
        Data after one of the tools above with regions.

    Returns
    -------
    One row per region, indexed by ``"<sample>:<region>"``; nothing is written into ``adata``.
    """
    stored = {name: adata.uns[name] for name in REGION_TOOLS
              if isinstance(adata.uns.get(name), dict) and isinstance(adata.uns[name].get("regions"), pd.DataFrame)}
    if not stored:
        msg = ("no per-region results: run tmt.tl.immune_phenotype, tmt.tl.immunosuppression or "
               "tmt.tl.resistance_profile with region_key= (the spatial phenotype also makes tiles).")
        raise TmtKeyError(msg)
    region_keys = [str(v["params"].get("region_key") or "") for v in stored.values()]
    region_key = next((k for k in region_keys if k), "")
    # tables made from other regions (tiles beside a region_key) would not share rows
    stored = {name: v for (name, v), k in zip(stored.items(), region_keys, strict=True) if k == region_key}
    parts = []
    if region_key and region_key in adata.obs:
        # the tools record the sample column they used, or "" for one sample called "all"
        sample_key = next(iter(stored.values()))["params"].get("sample_key") or ""
        samples = (adata.obs[sample_key].astype(str) if sample_key in adata.obs
                   else pd.Series("all", index=adata.obs_names))
        ids, frame = regions_of(adata, samples, region_key)
        parts.append(frame)
        for col, prefix in ((_keys.LINEAGE, "frac_lineage"), (_keys.STATE, "frac_state")):
            if col in adata.obs:
                parts.append(pd.crosstab(ids, adata.obs[col].astype(str), normalize="index").add_prefix(f"{prefix}:"))
    for name, v in stored.items():
        tab = v["regions"].drop(columns=["sample", "region", "n_cells"] if parts else [], errors="ignore")
        parts.append(tab.add_prefix(f"{name[4:]}:"))
    out = pd.concat(parts, axis=1)
    out.index.name = "region_id"
    return in_natural_order(out)
