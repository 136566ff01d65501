"""The package's shape (DESIGN.md's layout): the kernels import only jax and NumPy, no module
reaches into another package's private names, and the CKA package keeps its modules small."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxagree"
HEAVY = ("flax", "transformers", "tensorflow_datasets", "tensorflow", "matplotlib", "PIL", "orbax", "torch")


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def _package_of(module: str, tree_is_package: bool) -> str:
    return module if tree_is_package else module.rsplit(".", 1)[0]


def test_import_jaxagree_loads_the_kernels_without_models_files_or_plots():
    code = ("import sys, jaxagree\n"
            f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import jaxagree loaded {result.stdout.strip()}"


def test_no_module_imports_another_packages_private_names():
    modules = _modules()
    problems = []
    for module, tree in modules.items():
        is_package = (PACKAGE / Path(*module.split(".")[1:]) / "__init__.py").exists()
        home = _package_of(module, is_package)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("jaxagree"):
                continue
            source = node.module
            # A private module (jaxagree.cka._gram) belongs to its package: only that package's
            # modules import it. jaxagree._checks and _typing belong to the whole of jaxagree.
            parts = source.split(".")
            for depth, part in enumerate(parts):
                owner = ".".join(parts[:depth])
                if part.startswith("_") and not (home == owner or home.startswith(owner + ".")):
                    problems.append(f"{module} imports {source}")
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") and source != home:
                    problems.append(f"{module} imports {alias.name} from {source}")
    assert not problems, "\n".join(problems)


def test_cka_package_modules_stay_small():
    sizes = {path.name: len(path.read_text().splitlines()) for path in (PACKAGE / "cka").glob("*.py")}
    assert len(sizes) >= 6 and max(sizes.values()) <= 260, sizes


def test_kernels_take_no_files_and_no_models():
    """counts, stats, agreement, accuracy, cka/ and sharding import nothing of jaxagree's edges."""
    kernels = ("jaxagree.counts", "jaxagree.stats", "jaxagree.agreement", "jaxagree.accuracy", "jaxagree.cka",
               "jaxagree.sharding")
    edges = ("jaxagree.io", "jaxagree.models", "jaxagree.data", "jaxagree.pipeline", "jaxagree.report",
             "jaxagree.cli", "jaxagree.analysis")
    problems = []
    for module, tree in _modules().items():
        if not module.startswith(kernels):
            continue
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            problems += [f"{module} imports {name}" for name in names if name.startswith(edges + HEAVY)]
    assert not problems, "\n".join(problems)
