"""Sphinx configuration: the API reference from the docstrings, the executed tutorials, and the signature
catalogue generated from the packaged registry at build time.

Build with ``pip install -e ".[doc]" && sphinx-build -b html docs docs/_build/html``."""

from __future__ import annotations

from pathlib import Path

import tmetoolkit as tmt

project = "tmetoolkit"
author = "tmetoolkit developers"
copyright = "2026, tmetoolkit developers"  # noqa: A001 - Sphinx's name
version = release = tmt.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
]
autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("Sets", "returns_style")]
myst_enable_extensions = ["colon_fence"]
# the tutorials are stored without outputs and run here (real-data ones need ../shared/data); the docs build test
# passes -D nb_execution_mode=off, as the test suite runs them itself (nbmake)
nb_execution_mode = "auto"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
exclude_patterns = ["_build", "tutorials/*.html", "**/.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "tmetoolkit"
html_theme_options = {"show_toc_level": 2}


def _signature_catalogue(out: Path) -> None:
    """One section per collection, one entry per signature: what it marks, its genes and its source."""
    lines = ["# Signature catalogue", "",
             f"The gene sets packaged with tmetoolkit {tmt.__version__}, by collection. Each is a YAML file in "
             "`signatures/<collection>/` with its source, curation notes and the outdated symbols it replaced; "
             "`tmt.sig.get(name)` returns it and `tmt.sig.list()` lists them all.", ""]
    for collection in tmt.sig.COLLECTIONS:
        lines += [f"## {collection}", ""]
        for sig in tmt.sig.collection(collection):
            meta, src = sig.metadata, sig.metadata.get("source", {})
            doi = f" [doi:{src['doi']}](https://doi.org/{src['doi']})" if src.get("doi") else ""
            what = " · ".join(str(meta[k]) for k in ("population", "state") if meta.get(k))
            lines += [f"### `{sig.name}`", "", f"{what} · {len(sig.genes_up) + len(sig.genes_down)} genes", "",
                      str(meta.get("description", "")), "",
                      f"**Up:** {', '.join(sig.genes_up)}" + (f"  \n**Down:** {', '.join(sig.genes_down)}"
                                                               if sig.genes_down else ""), "",
                      f"*{src.get('citation', '')}*{doi}", ""]
    out.write_text("\n".join(lines))


_signature_catalogue(Path(__file__).parent / "signatures.md")
