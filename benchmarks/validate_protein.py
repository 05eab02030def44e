"""Protein panels at a glance: per panel, lineage accuracy of ``tmt.tl.annotate`` beside the arcsinh + z + argmax
baseline and the cross-validated logistic-regression ceiling of ``validate_annotation.py`` (same cells; classes the
file does not tie to one lineage are left out), then recall and precision per class. About 30 s::

    python benchmarks/validate_protein.py
"""
import sys, warnings, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np, pandas as pd
import validate_annotation as va
import tmetoolkit as tmt

LIN = {
 "phenoptr": {"CD8+": "CD8 T", "FoxP3+": "CD4 T", "CD68+": va.MM, "CK+": "Malignant/Epithelial"},
 "scimap": {"Tumor CD45- CD30+": "Malignant/Epithelial", "Tumor CD30+": "Malignant/Epithelial",
            "Tumor CD30+ KI67+": "Malignant/Epithelial", "CD8 T cells": "CD8 T", "CD4 T cells": "CD4 T",
            "Regulatory T cells": "CD4 T", "Follicular Helper T cells": "CD4 T", "PD1+ T cells": "CD4 T;CD8 T",
            "T cells": "CD4 T;CD8 T", "M2 Macrophages": va.MM, "M1 Macrophages": va.MM, "CD68+ Macrophages": va.MM,
            "Myeloid Dendritic cells": "DC", "CD25+ Dendritic cells": "DC", "NK cells": "NK",
            "Granulocytes": "Neutrophil", "ASMA+ cells": "Fibroblast;Pericyte", "B cells": "B"},
 "schurch": {"CD4+ T cells CD45RO+": "CD4 T", "Tregs": "CD4 T", "CD8+ T cells": "CD8 T",
             "CD68+CD163+ macrophages": va.MM, "CD68+ macrophages": va.MM, "CD11b+CD68+ macrophages": va.MM,
             "vasculature": "Endothelial", "lymphatics": "Endothelial", "smooth muscle": "Fibroblast;Pericyte",
             "stroma": "Fibroblast", "tumor cells": "Malignant/Epithelial", "granulocytes": "Neutrophil",
             "plasma cells": "Plasma", "B cells": "B"},
}
_CEIL = {}

def run(sets=("phenoptr", "scimap", "schurch"), transform=None, verbose=True, annotate_kwargs=None):
    rows, accs = [], []
    for name in sets:
        file, col, kwargs, classes = va.PROTEIN[name]
        a = va.read_shared(name, file)
        if transform is not None:
            a = transform(name, a)
        kw = dict(kwargs); kw.update((annotate_kwargs or {}).get(name, {}))
        t0 = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tmt.tl.annotate(a, **kw)
        dt = time.time() - t0
        st, truth, lin = a.obs["tmt_state"].astype(str), a.obs[col].astype(str), a.obs["tmt_lineage"].astype(str)
        b_lin, b_st = va.protein_baseline(a, kwargs.get("markers"))
        if name not in _CEIL:
            _CEIL[name] = va.protein_ceiling(a, truth).astype(str)
        ceil = _CEIL[name]
        tl = truth.map(LIN[name])
        keep = tl.notna()
        acc = va.lineage_accuracy(lin, tl)
        bacc = va.lineage_accuracy(b_lin, tl)
        cacc = va.lineage_accuracy(ceil.map(lambda c: (LIN[name].get(c) or "-").split(";")[0]), tl)
        accs.append({"set": name, "n": int(keep.sum()), "ours": acc, "baseline": bacc, "ceiling": cacc,
                     "unassigned": float((lin[keep] == "unassigned").mean()), "sec": dt})
        for cls, (fl, ol) in classes.items():
            t = truth.isin(fl); p = st.isin(ol) | lin.isin(ol)
            bp = b_st.isin(ol) | b_lin.isin(ol); cp = ceil.isin(fl)
            rows.append({"set": name, "class": cls, "n": int(t.sum()),
                         "R": (t & p).sum() / max(t.sum(), 1), "P": (t & p).sum() / max(p.sum(), 1),
                         "bR": (t & bp).sum() / max(t.sum(), 1), "bP": (t & bp).sum() / max(bp.sum(), 1),
                         "cR": (t & cp).sum() / max(t.sum(), 1), "cP": (t & cp).sum() / max(cp.sum(), 1)})
        if verbose and name == "schurch":
            print(pd.crosstab(truth[keep], lin[keep]).to_string())
    A, R = pd.DataFrame(accs), pd.DataFrame(rows)
    if verbose:
        pd.set_option("display.width", 200)
        print(A.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print(R.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return A, R, a

if __name__ == "__main__":
    A, R, _ = run()
    out = sys.argv[1] if len(sys.argv) > 1 else None
    if out:
        A.to_csv(out + "_acc.csv", index=False); R.to_csv(out + "_rows.csv", index=False)
