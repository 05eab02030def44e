import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml

import tmetoolkit as tmt
from tmetoolkit.sig._registry import COLLECTIONS, _signature_dir

ROOT = Path(__file__).resolve().parents[1]


def _yaml_files():
    return sorted(_signature_dir().glob("*/*.yaml"))


def test_every_file_is_schema_valid_and_cited():
    schema = tmt.sig.schema()
    names = set()
    files = _yaml_files()
    assert len(files) >= 80
    for f in files:
        d = yaml.safe_load(f.read_text())
        jsonschema.validate(d, schema)
        assert d["name"] == f.stem, f"file name and signature name differ: {f}"
        assert d["collection"] == f.parent.name
        assert d["name"] not in names
        names.add(d["name"])
        assert d["source"]["doi"].startswith("10.")
        assert len(d["source"]["citation"]) > 20
        assert not set(d["genes_up"]) & set(d["genes_down"]), f"{f.name}: gene both up and down"
        if d["species"] == "human":
            for g in d["genes_up"] + d["genes_down"]:
                assert g == g.upper() or g.endswith(("orf162", "orf21", "orf89", "orf48", "orf54")), (f.name, g)
        for old, new in d["curation"]["renamed"].items():
            assert old not in d["genes_up"] + d["genes_down"]
            assert new in d["genes_up"] + d["genes_down"]
        assert set(d.get("weights", {})) <= set(d["genes_up"]) | set(d["genes_down"])


def test_collections_cover_the_required_programmes():
    table = tmt.sig.list()
    assert set(table["collection"]) == set(COLLECTIONS)
    required = [
        "T_cell", "CD8_T", "CD4_T", "NK", "B_cell", "Plasma_cell", "Macrophage", "Monocyte", "Neutrophil", "cDC1",
        "mregDC", "Mast", "Fibroblast", "Pericyte", "Endothelial", "Epithelial", "Proliferation",
        "TAM_M1_like", "TAM_M2_like", "TAM_IFN", "TAM_Inflam", "TAM_LA", "TAM_SPP1", "TAM_Angio", "TAM_Reg",
        "TAM_RTM", "TAM_FOLR2_resident", "TAM_Prolif", "myCAF", "iCAF", "apCAF", "CAF_S1", "CAF_ecm_myCAF",
        "PMN_MDSC_like", "M_MDSC_like", "Treg", "Treg_activated", "CD8_naive_memory", "CD8_effector", "CD8_Tpex",
        "CD8_Tex", "Checkpoint_receptors", "Checkpoint_ligands", "CD8_T_effector", "IFNG_6", "Cytolytic_activity",
        "Pan_F_TBRS", "APM", "IFNG_pathway", "HALLMARK_INTERFERON_GAMMA_RESPONSE", "MPAS",
        "HALLMARK_PI3K_AKT_MTOR_SIGNALING", "HALLMARK_WNT_BETA_CATENIN_SIGNALING", "HALLMARK_GLYCOLYSIS",
        "HALLMARK_HYPOXIA", "Epigenetic_regulators",
    ]
    missing = set(required) - set(table["name"])
    assert not missing
    assert {"name", "collection", "population", "state", "n_genes", "species", "citation", "doi"} <= set(table.columns)
    assert (table["doi"].str.len() > 5).all()


def test_get_and_collection():
    s = tmt.sig.get("TAM_M2_like")
    assert "CD163" in s.genes_up and s.doi == "10.1016/j.immuni.2014.06.008"
    assert all(x.collection == "caf" for x in tmt.sig.collection("caf"))
    assert len(tmt.sig.collection("all")) == len(tmt.sig.list())
    with pytest.raises(KeyError, match="TAM_M2_like"):
        tmt.sig.get("TAM_M2like")
    with pytest.raises(KeyError, match="tam"):
        tmt.sig.collection("tams")


def test_outdated_symbols_are_renamed_and_matched():
    al = tmt.sig.aliases()
    assert al["SEPP1"] == "SELENOP" and al["CTGF"] == "CCN2"
    # no registry gene is an outdated alias
    genes = {g for s in tmt.sig.collection("all") for g in s.genes}
    assert not genes & set(al)
    from tmetoolkit.sig._genes import match_genes

    # a reference that still uses SEPP1 is matched to SELENOP
    found = match_genes(("SELENOP", "C1QA"), pd.Index(["SEPP1", "C1QA", "X"]), "human")
    assert found == {"SELENOP": [0], "C1QA": [1]}
    # genes renamed since the hg19-era references of many shared files (Puram 2017, Tirosh 2016 and Wu 2020 carry
    # these previous symbols), and one registry gene renamed since its list was published
    found = match_genes(("ATP5MC1", "H2AC6", "GFUS", "GALNT15"), pd.Index(["TSTA3", "HIST1H2AC", "ATP5G1", "GALNTL2"]),
                        "human")
    assert found == {"ATP5MC1": [2], "H2AC6": [1], "GFUS": [0], "GALNT15": [3]}
    assert "GALNT15" in tmt.sig.get("CAF_S1").genes_up
    # older mouse references keep the previous symbols too, which the ortholog table (current symbols) lacks
    assert match_genes(("SELENOP", "CCN2", "CD8A"), pd.Index(["Sepp1", "Ctgf", "Cd8a"]), "mouse") == {
        "SELENOP": [0], "CCN2": [1], "CD8A": [2]}


def test_ortholog_table_ships_and_translates():
    tab = tmt.sig.orthologs()
    assert len(tab) > 15000
    m = tmt.sig.to_mouse(["CD8A", "FOXP3", "PDCD1"])
    assert m == {"CD8A": ("Cd8a",), "FOXP3": ("Foxp3",), "PDCD1": ("Pdcd1",)}


def test_mouse_orthologs_are_reciprocal_best_pairs():
    """A human marker reads the mouse genes that are its best-supported orthologs and have no better human partner:
    not the weakly linked genes of other families that HCOP also lists (SIGLEC6, a mast-cell gene, with mouse Cd33
    of myeloid cells; SIRPG of T cells with Sirpa of myeloid cells; CXCR1 with Cxcr2, CXCR2's own ortholog)."""
    tab = tmt.sig.orthologs()
    assert {"Cd33", "Sirpa", "Cxcr2"} <= set(tab.loc[tab["human"].isin(["SIGLEC6", "SIRPG", "CXCR1"]), "mouse"])
    m = tmt.sig.to_mouse(["SIGLEC6", "SIRPG", "CXCR1", "CXCR2", "CD33", "SIRPA", "CD8B"])
    assert m["CXCR1"] == ("Cxcr1",) and m["CXCR2"] == ("Cxcr2",) and m["CD8B"] == ("Cd8b1",)
    assert m["CD33"] == ("Cd33",) and m["SIRPA"] == ("Sirpa",)
    assert "Cd33" not in m.get("SIGLEC6", ()) and "Sirpa" not in m.get("SIRPG", ())


def test_gmt_round_trip_and_decoupler(tmp_path):
    sigs = tmt.sig.collection("caf") + [tmt.sig.get("NK")]
    path = tmp_path / "x.gmt"
    tmt.sig.write_gmt(sigs, path)
    back = {s.name: s for s in tmt.sig.read_gmt(path)}
    for s in sigs:
        assert back[s.name].genes_up == s.genes_up
        assert back[s.name].genes_down == s.genes_down
    net = tmt.sig.to_decoupler(["NK"])
    assert list(net.columns) == ["source", "target", "weight"]
    assert (net.loc[net["target"] == "CD3E", "weight"] < 0).all()
    with pytest.raises(FileNotFoundError):
        tmt.sig.read_gmt(tmp_path / "missing.gmt")


def test_as_signatures_accepts_every_form(tmp_path):
    path = tmp_path / "a.gmt"
    path.write_text("MINE\tdesc\tCD3E\tCD2\n")
    got = tmt.sig.as_signatures(["tam", "NK", {"custom": ["CD8A", "CD3E-"]}, str(path)])
    names = [s.name for s in got]
    assert "TAM_M1_like" in names and "NK" in names and "custom" in names and "MINE" in names
    custom = next(s for s in got if s.name == "custom")
    assert custom.genes_down == ("CD3E",)
    with pytest.raises(TypeError):
        tmt.sig.as_signatures(3)
    with pytest.raises(ValueError, match="without '/'"):  # a score column named "M1/M2" could not be written
        tmt.sig.as_signatures({"M1/M2": ["CD86", "CD163"]})


def test_signatures_are_inside_the_built_wheel(tmp_path):
    """Build the wheel, install it into a private folder and load the registry from there."""
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir),
         str(ROOT)],
        check=True,
    )
    (wheel,) = wheel_dir.glob("tmetoolkit-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert sum(n.startswith("tmetoolkit/_signatures/") and n.endswith(".yaml") for n in names) >= 80
    assert "tmetoolkit/_signatures/schema.json" in names
    assert "tmetoolkit/_data/orthologs_human_mouse.tsv.gz" in names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True)
    code = (
        "import tmetoolkit as tmt, tmetoolkit.sig._registry as r; "
        "d = r._signature_dir(); assert 'site' in str(d), d; "
        "t = tmt.sig.list(); assert len(t) >= 80 and t['doi'].str.startswith('10.').all(); "
        "assert len(tmt.sig.orthologs()) > 15000; print(len(t))"
    )
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 80


def test_mouse_symbols_match_in_any_letter_case():
    """Mouse files often carry upper-cased symbols (CD3E for Cd3e); with species="mouse" they matched nothing, so
    every lineage was not assessable and every cell unassigned."""
    from tmetoolkit.sig._genes import match_genes

    for names in (["Cd3e", "Cd8a", "Foxp3"], ["CD3E", "CD8A", "FOXP3"]):
        found = match_genes(["CD3E", "CD8A", "FOXP3"], pd.Index(names), "mouse")
        assert found == {"CD3E": [0], "CD8A": [1], "FOXP3": [2]}
