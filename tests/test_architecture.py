"""The layer rule of BUILD_NOTES.md, checked on the source of every module, so that an import
circle cannot come back; and the family contract as the registry enforces it."""

import ast
import importlib
import pathlib
import re

import pytest

from jaxgen.core import config as config_lib, contract
from jaxgen.core import config_keys
from jaxgen.core.config import ConfigError, load
from jaxgen.data.sources import DataSpec
from jaxgen.families import FAMILIES, build, family_keys, family_module

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxgen"

# The layers, lowest first, each a set of folders of jaxgen/ (the library is several); a
# module's layer is its folder's, and the top-level modules (the package, __main__ and the
# commands' entry points) are the CLI's.
LAYERS = {
    "core": ("core",),
    "library": ("models", "losses", "diffusion", "text", "data", "pretrained"),
    "eval": ("eval",),
    "pictures": ("pictures",),
    "families": ("families",),
    "training": ("training",),
    "engine": ("engine",),
    "cli": ("cli",),
}
ORDER = list(LAYERS)
# Beside the layers below: eval and pictures are siblings that never see each other, and the
# training loop sees no family and no evaluation (it receives them through the contract).
NOT_BELOW = {"pictures": {"eval"}, "training": {"families", "eval"}}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) <= 2 and (len(parts) == 1 or (PACKAGE / f"{parts[1]}.py").is_file()):
        return "cli"  # jaxgen, jaxgen.__main__, jaxgen.train, ...
    for name, folders in LAYERS.items():
        if parts[1] in folders:
            return name
    raise AssertionError(f"{module} is in no layer's folder: add its folder to LAYERS")


def allowed(importer: str, imported: str) -> bool:
    a, b = layer(importer), layer(imported)
    return ORDER.index(b) <= ORDER.index(a) and b not in NOT_BELOW.get(a, set())


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(path: pathlib.Path, known: set[str]) -> set[str]:
    """jaxgen modules `path` imports anywhere (inside functions too), and those it names in
    strings for importlib ("jaxgen.families.vae:VAEFamily", a registry's entries)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from P import m` of a submodule m depends on m, not on P's own code.
            submodules = [f"{node.module}.{a.name}" for a in node.names]
            names = submodules + [node.module] * any(m not in known for m in submodules)
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value.partition(":")[0]] if REGISTERED.fullmatch(node.value) else []
        out |= {n for n in names if n in known}
    return out


REGISTERED = re.compile(r"jaxgen(\.[a-z_0-9]+)+(:[A-Za-z_][A-Za-z_0-9]*)?")


def test_every_module_imports():
    for name in modules():
        importlib.import_module(name)


def test_no_module_imports_a_layer_above_its_own():
    found = modules()
    graph = {name: imports(path, set(found)) for name, path in found.items()}
    violations = [f"{name} ({layer(name)}) imports {dep} ({layer(dep)})"
                  for name, deps in sorted(graph.items()) for dep in sorted(deps)
                  if not allowed(name, dep)]
    assert not violations, "\n".join(violations)


def test_there_is_no_import_circle():
    found = modules()
    graph = {name: imports(path, set(found)) - {name} for name, path in found.items()}

    def reachable(start):
        seen, todo = set(), [start]
        while todo:
            for dep in graph[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    circles = sorted(name for name in graph if name in reachable(name))
    assert not circles, circles


def test_jaxgen_modules_are_imported_at_the_top_of_a_module():
    """Imports of jaxgen inside functions hide the real dependency graph."""
    found = modules()
    hidden = []
    for name, path in found.items():
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [f"{name}.{function.name}" for node in ast.walk(function)
                           if isinstance(node, (ast.Import, ast.ImportFrom))
                           and imports_jaxgen(node)]
    assert not hidden, hidden


def imports_jaxgen(node) -> bool:
    if isinstance(node, ast.ImportFrom):
        return bool(node.module) and node.module.split(".")[0] == "jaxgen"
    return any(a.name.split(".")[0] == "jaxgen" for a in node.names)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_registered_family_declares_its_keys_and_fulfils_the_contract(name):
    module = family_module(name)
    default = {"noisy_classifier": "noisy_default_config",
               "text_latent_diffusion": "latent_default_config"}.get(name, "default_config")
    config = getattr(module, default)()
    assert config.family == name
    assert set(config_lib.flatten(config.to_dict())) == set(config_keys.BASE_KEYS) | set(
        family_keys(name))
    if "latent_diffusion" in name:
        return  # builds only on a trained autoencoder (tests/test_diffusion.py)
    # Captioned data for the text families: a vocabulary and a prompt per class.
    text = dict(vocab_size=12, max_tokens=6,
                class_prompts=tuple((2, 4, 5 + k % 7, 0, 0, 0) for k in range(10)),
                empty_prompt=(2, 0, 0, 0, 0, 0))
    # StyleGAN's default widths make 32x32 images; CycleGAN's downsamplings need 16x16.
    size = {"stylegan": 32, "cyclegan": 16}.get(name, 8)
    family = build(config, DataSpec((size, size, 1), 10, 16, two_domains=name == "cyclegan",
                                    **(text if "text" in name else {})))
    assert isinstance(family, contract.Family)
    assert not contract.missing_members(family)


class NotAFamily:
    """Has a train step but no init or eval step."""

    def __init__(self, config, data):
        pass

    def train_step(self, state, batch, rng):
        return state, {}


def test_a_plug_in_that_is_not_a_family_is_refused():
    config = load("experiments/vae_digits.py", ["family=tests.test_architecture:NotAFamily"])
    with pytest.raises(ConfigError, match="does not fulfil the family contract.*no value_range"):
        build(config, DataSpec((8, 8, 1), 10, 16))


def test_a_declared_key_out_of_bounds_is_a_config_error():
    with pytest.raises(ConfigError, match="model.latent_dim must be positive, got 0"):
        build(load("experiments/vae_digits.py", ["model.latent_dim=0"]), DataSpec((8, 8, 1), 10,
                                                                                 16))
    with pytest.raises(ConfigError, match="model.prediction must be one of eps, x0, v"):
        build(load("experiments/ddpm_digits.py", ["model.prediction=score"]),
              DataSpec((8, 8, 1), 10, 16))


def test_the_key_reference_is_generated_from_the_declarations():
    from jaxgen.cli import keys
    readme = pathlib.Path(__file__).resolve().parents[1] / "docs" / "keys.md"
    text = readme.read_text()
    assert keys.with_tables(text, ["base", *FAMILIES]) == text, (
        "stale: run python -m jaxgen.keys --write docs/keys.md")


def _edits_sys_path(tree: ast.AST) -> bool:
    """sys.path.insert/append/extend/... or an assignment to sys.path, anywhere in a module."""
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
        if (isinstance(target, ast.Attribute) and target.attr == "path"
                and isinstance(target.value, ast.Name) and target.value.id == "sys"):
            return True
    return False


def test_no_module_of_the_project_edits_sys_path():
    """Issue 39: benchmarks and scripts run as modules of the checkout (`python -m
    benchmarks.NAME`) beside the installed jaxgen; a sys.path edit hides which code runs."""
    top = PACKAGE.parent
    files = [p for folder in ("jaxgen", "benchmarks", "scripts", "examples", "experiments")
             for p in sorted((top / folder).rglob("*.py"))]
    assert len(files) > 100
    editing = [str(p.relative_to(top)) for p in files if _edits_sys_path(ast.parse(p.read_text()))]
    assert not editing, editing
    # The check can fail: the line that issue 39 removed from ten benchmarks.
    assert _edits_sys_path(ast.parse("import sys\nsys.path.insert(0, ROOT)\n"))
