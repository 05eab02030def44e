"""The documentation builds without a warning: every docstring is valid reStructuredText, every public name has
its page, and the signature catalogue lists every packaged signature. The tutorials are not executed here (the
test suite runs them through nbmake)."""

import shutil
import subprocess
import sys
from pathlib import Path

import tmetoolkit as tmt

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    # built from a copy: the build writes the API stubs and the catalogue beside its sources
    source, out = tmp_path / "docs", tmp_path / "html"
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns("_build", "generated", "signatures.md"))
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-D", "nb_execution_mode=off",
           "-d", str(tmp_path / "doctrees"), str(source), str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    for mod in ("pp", "tl", "pl", "get", "sig", "datasets"):
        for name in getattr(tmt, mod).__all__:
            assert (out / "generated" / f"tmetoolkit.{mod}.{name}.html").is_file(), (mod, name)
    catalogue = (out / "signatures.html").read_text()
    missing = [n for n in tmt.sig.list()["name"] if n not in catalogue]
    assert not missing, missing
    for notebook in sorted((DOCS.parent / "tutorials").glob("*.ipynb")):
        assert (out / "tutorials" / f"{notebook.stem}.html").is_file(), notebook.name
