"""The package's layers import one way, and the ClientApp stays light.

config (with checks, architectures, errors) -> data -> core -> dp -> federation ->
api / run / flower / apps. Only ``flower/`` and the two apps import ``flwr``.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "vflgan_app"

# what each layer may import from the package (besides itself)
ALLOWED = {
    "checks": set(),
    "errors": set(),
    "architectures": set(),
    "config": {"checks", "architectures"},
    "data": {"config", "checks", "errors"},
    "core": {"config", "checks", "architectures", "errors", "data"},
    "dp": {"config", "checks", "architectures", "errors", "data", "core"},
    "eval": {"config", "checks", "architectures", "errors", "data"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            if node.module == "vflgan_app":
                out |= {f"vflgan_app.{a.name}" for a in node.names}
    return out


def _layer_files(layer: str) -> list[Path]:
    folder = PKG / layer
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PKG / f"{layer}.py"]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_below_them(layer):
    # Prepare / Execute: every package import of every file of the layer
    bad = []
    for path in _layer_files(layer):
        for mod in _imports(path):
            if mod == "flwr" or mod.startswith("flwr."):
                bad.append(f"{path.relative_to(PKG.parent)} imports {mod}")
            elif mod.startswith("vflgan_app."):
                target = _layer(mod)
                if target != layer and target not in ALLOWED[layer]:
                    bad.append(f"{path.relative_to(PKG.parent)} imports {mod}")
    # Assert
    assert not bad, "\n".join(bad)


def _modules_loaded_by(statement: str) -> dict:
    code = (f"import sys, json; {statement}; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=PKG.parent).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_flower_free_layers_load_no_flwr():
    # Execute: import every module of core/, dp/, data/, eval/ in a fresh interpreter
    mods = [".".join(p.relative_to(PKG.parent).with_suffix("").parts)
            for layer in ("core", "dp", "data", "eval") for p in _layer_files(layer)]
    mods = [m.removesuffix(".__init__") for m in mods]
    loaded = _modules_loaded_by("; ".join(f"import {m}" for m in mods))
    # Assert
    assert "flwr" not in loaded


def test_client_app_does_not_load_dp_accounting_or_sklearn():
    loaded = _modules_loaded_by("import vflgan_app.client_app")
    assert "flwr" in loaded  # the probe works
    assert not loaded & {"dp_accounting", "sklearn", "scipy", "matplotlib"}


def test_config_loads_no_torch():
    loaded = _modules_loaded_by("import vflgan_app.config")
    assert not loaded & {"torch", "pandas", "numpy", "flwr"}
