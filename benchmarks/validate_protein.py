"""Protein panels at a glance: per panel, lineage accuracy of ``tmt.tl.annotate`` beside the arcsinh + z + argmax
baseline and the cross-validated logistic-regression ceiling of ``validate_annotation.py`` (same cells; classes the
file does not tie to a lineage are left out), and with 30 k-means clusters of arcsinh(x / 5) passed as ``groupby``
(``ours_groupby``, clusters as a user makes them), then recall (R) and precision (P) per class for the three (b:
baseline, c: ceiling). About 30 s::

    python benchmarks/validate_protein.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate_annotation as va

import tmetoolkit as tmt

# the files' classes -> the lineages they allow (";" = either)
LINEAGES = {
    "phenoptr": {"CD8+": "CD8 T", "FoxP3+": "CD4 T", "CD68+": va.MM, "CK+": "Malignant/Epithelial"},
    "scimap": {"Tumor CD45- CD30+": "Malignant/Epithelial", "Tumor CD30+": "Malignant/Epithelial",
               "Tumor CD30+ KI67+": "Malignant/Epithelial", "CD8 T cells": "CD8 T", "CD4 T cells": "CD4 T",
               "Regulatory T cells": "CD4 T", "Follicular Helper T cells": "CD4 T", "PD1+ T cells": "CD4 T;CD8 T",
               "T cells": "CD4 T;CD8 T", "M2 Macrophages": va.MM, "M1 Macrophages": va.MM,
               "CD68+ Macrophages": va.MM, "Myeloid Dendritic cells": "DC", "CD25+ Dendritic cells": "DC",
               "NK cells": "NK", "Granulocytes": "Neutrophil", "ASMA+ cells": "Fibroblast;Pericyte", "B cells": "B"},
    "schurch": {"CD4+ T cells CD45RO+": "CD4 T", "Tregs": "CD4 T", "CD8+ T cells": "CD8 T",
                "CD68+CD163+ macrophages": va.MM, "CD68+ macrophages": va.MM, "CD11b+CD68+ macrophages": va.MM,
                "vasculature": "Endothelial", "lymphatics": "Endothelial", "smooth muscle": "Fibroblast;Pericyte",
                "stroma": "Fibroblast", "tumor cells": "Malignant/Epithelial", "granulocytes": "Neutrophil",
                "plasma cells": "Plasma", "B cells": "B"},
}


def _rp(t: pd.Series, p: pd.Series) -> tuple[float, float]:
    return float((t & p).sum() / max(t.sum(), 1)), float((t & p).sum() / max(p.sum(), 1))


def with_kmeans(a: ad.AnnData, k: int = 30, seed: int = 0) -> ad.AnnData:
    """A copy of ``a`` with ``obs["kmeans"]``: ``k`` k-means clusters of the arcsinh(x / 5) intensities."""
    from sklearn.cluster import KMeans

    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X, dtype=np.float64)
    out = a.copy()
    out.obs["kmeans"] = KMeans(k, n_init=2, random_state=seed).fit_predict(np.arcsinh(X / 5)).astype(str)
    return out


def run(sets=("phenoptr", "scimap", "schurch")) -> tuple[pd.DataFrame, pd.DataFrame]:
    accs, rows = [], []
    for name in sets:
        file, col, kwargs, classes = va.PROTEIN[name]
        a = va.read_shared(name, file)
        if a is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tmt.tl.annotate(a, **kwargs)
        st, lin = a.obs["tmt_state"].astype(str), a.obs["tmt_lineage"].astype(str)
        truth = a.obs[col].astype(str)
        clustered = with_kmeans(a)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tmt.tl.annotate(clustered, groupby="kmeans", **kwargs)
        b_lin, b_st = va.protein_baseline(a, kwargs.get("markers"))
        ceil = va.protein_ceiling(a, truth).astype(str)
        lut = LINEAGES[name]
        allowed = truth.map(lut)
        keep = allowed.notna()
        ceil_lin = ceil.map(lambda c, lut=lut: (lut.get(c) or "-").split(";")[0])
        accs.append({"set": name, "n": int(keep.sum()), "ours": va.lineage_accuracy(lin, allowed),
                     "ours_groupby": va.lineage_accuracy(clustered.obs["tmt_lineage"].astype(str), allowed),
                     "baseline": va.lineage_accuracy(b_lin, allowed), "ceiling": va.lineage_accuracy(ceil_lin, allowed),
                     "unassigned": float((lin[keep] == "unassigned").mean()),
                     "method": a.uns["tmt_annotate"]["params"].get("lineage_method", "markers")})
        for cls, (file_labels, ours_labels) in classes.items():
            t = truth.isin(file_labels)
            r, p = _rp(t, st.isin(ours_labels) | lin.isin(ours_labels))
            br, bp = _rp(t, b_st.isin(ours_labels) | b_lin.isin(ours_labels))
            cr, cp = _rp(t, ceil.isin(file_labels))
            rows.append({"set": name, "class": cls, "n": int(t.sum()), "R": r, "P": p, "bR": br, "bP": bp,
                         "cR": cr, "cP": cp})
    return pd.DataFrame(accs), pd.DataFrame(rows)


if __name__ == "__main__":
    acc, per_class = run()
    pd.set_option("display.width", 200)
    print("Lineage accuracy per panel (unassigned counts as wrong)")
    print(acc.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print("\nRecall and precision per class of the file")
    print(per_class.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
