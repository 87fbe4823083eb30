"""The method registry: declared parameters in specs, the cache key, --explain and the refusals of
keys and parameters nobody declared."""

import dataclasses
import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from edgecomp.cli import app
from edgecomp.compose.explain import explanation, method_line
from edgecomp.compose.methods import METHODS, Composed, Param, methods_help, register
from edgecomp.compose.methods.registry import OUTPUTS
from edgecomp.compose.spec import method_key, resolve_spec, spec_keys
from edgecomp.errors import EdgecompError
from edgecomp.recipes import run_recipe


@pytest.fixture
def fake():
    """A method ``fake`` with one parameter, registered for the test only."""

    @register(
        "fake",
        summary="a stand-in",
        output="dense",
        version=1,
        reference="none",
        params=(Param("strength", float, 1.0, "how strong", low=0.0),),
    )
    def compose_fake(terms, parameters):
        return Composed()

    yield METHODS["fake"]
    del METHODS["fake"]


def key(spec: dict, root) -> str:
    return resolve_spec(spec, root).digest()


def test_the_cache_key_follows_every_parameter_and_the_version(fake, tmp_path):
    first = key({"method": "fake", "strength": 2}, tmp_path)
    assert key({"method": "fake", "strength": 2.0}, tmp_path) == first
    assert key({"method": "fake", "strength": 3}, tmp_path) != first
    # a default is part of the key as its value: leaving it out or writing it names the same export
    assert key({"method": "fake"}, tmp_path) == key({"method": "fake", "strength": 1.0}, tmp_path)
    METHODS["fake"] = dataclasses.replace(fake, version=2)
    assert key({"method": "fake", "strength": 2}, tmp_path) != first


def test_the_key_holds_each_declared_parameter_with_defaults(tmp_path):
    for name, method in METHODS.items():
        canonical = resolve_spec({"method": name}, tmp_path).canonical()
        assert canonical["method"] == name and canonical["method_version"] == method.version
        assert canonical["parameters"] == {p.name: p.default for p in method.params}
    spec = {"method": "dare", "density": "0.5", "seed": 7}
    given = resolve_spec(spec, tmp_path).canonical()
    assert given["parameters"] == {"density": 0.5, "seed": 7}
    # the library's export index keys a spec by the same method part, without loading adapters
    assert method_key(spec) == {k: given[k] for k in ("method", "method_version", "parameters")}


def test_every_method_declares_what_it_is():
    assert {"params", "delta", "ties", "dare"} <= set(METHODS)
    for name, method in METHODS.items():
        assert method.name == name and method.summary and method.reference
        assert method.output in OUTPUTS and isinstance(method.version, int) and method.version >= 1
        for param in method.params:
            assert param.help and param.convert(param.default, name) == param.default
        assert name in methods_help()
    assert [p.name for p in METHODS["ties"].params] == ["density"]
    assert [p.name for p in METHODS["dare"].params] == ["density", "seed"]
    assert METHODS["params"].params == METHODS["delta"].params == ()


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"method": "delta", "density": 0.5}, "method 'delta' takes no parameter 'density' (its parameters: none)"),
        ({"method": "ties", "seed": 3}, "method 'ties' takes no parameter 'seed' (its parameters: density)"),
        ({"method": "ties", "density": 0}, "method 'ties': density must be (0, 1], not 0"),
        ({"method": "dare", "density": 1.5}, "density must be (0, 1], not 1.5"),
        ({"method": "dare", "density": "half"}, "density must be"),
        ({"method": "dare", "seed": 1.5}, "seed must be an integer, not 1.5"),
        ({"method": "dare", "seed": True}, "seed must be an integer"),
        ({"method": ["ties"]}, "unknown method"),
        ({"mehtod": "delta"}, "composition spec: unknown key 'mehtod' (allowed: adapters, density, "),
        ({"adapters": [{"path": "a", "wieght": 1}]}, "adapter entry 'a': unknown key 'wieght' (allowed: attention, "),
    ],
)
def test_bad_method_keys_and_parameters_are_refused(spec, message, tmp_path):
    with pytest.raises(EdgecompError) as error:
        resolve_spec(spec, tmp_path)
    assert message in str(error.value)


def test_a_flag_the_method_does_not_take_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["compose", "--method", "delta", "--density", "0.5", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "edgecomp: error: method 'delta' takes no parameter 'density' (its parameters: none)"
    )


def test_explain_names_the_method_its_parameters_and_defaults(tmp_path):
    line = method_line(resolve_spec({"method": "dare", "density": 0.5}, tmp_path))
    assert line.startswith("dare v1 (density=0.5, seed=0 (default)): ") and "arxiv.org" in line
    assert method_line(resolve_spec({"method": "delta"}, tmp_path)).startswith("delta v1 (no parameters): ")
    printed = io.StringIO()
    Console(file=printed, width=200).print(explanation(resolve_spec({"method": "ties"}, tmp_path)))
    assert "composition: ties" in printed.getvalue() and "ties v1 (density=1.0 (default)): Yadav" in printed.getvalue()


@pytest.mark.parametrize(
    "recipe, message",
    [
        (
            "wrkdir: runs\nsteps:\n  - train: {kind: task}\n",
            "unknown key 'wrkdir' (allowed: base, force, steps, workdir)",
        ),
        (
            "steps:\n  - train: {kind: task, lang: en, data: d.jsonl, out: x, setps: 3}\n",
            "train step: unknown key 'setps'",
        ),
        ("steps:\n  - compose: {adapters: ['a:1'], out: x, rnak: 4}\n", "compose step: unknown key 'rnak'"),
        (
            "steps:\n  - merge-export: {adapters: ['a:1'], out: x, quantise: int4}\n",
            "merge-export step: unknown key 'quantise'",
        ),
        ("steps:\n  - pack: {adapter: a, out: x, rank: 2, dtyp: float16}\n", "pack step: unknown key 'dtyp'"),
    ],
)
def test_unknown_recipe_keys_are_refused(recipe, message, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe, encoding="utf-8")
    with pytest.raises(EdgecompError) as error:
        run_recipe(path)
    assert message in str(error.value)


def test_a_method_registered_twice_or_with_a_spec_key_as_parameter_is_refused(fake, monkeypatch):
    with pytest.raises(ValueError, match="registered twice"):
        register("fake", summary="again", output="dense", version=1, reference="none")
    clash = dataclasses.replace(fake, params=(Param("top_k", int, 1, "clashes with the related scenario's key"),))
    monkeypatch.setitem(METHODS, "fake", clash)
    with pytest.raises(EdgecompError, match="parameter 'top_k', which is a spec key"):
        spec_keys()
