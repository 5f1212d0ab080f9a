"""A broken plugin gets one line on stderr that names it and says what is wrong, and exit code 2;
``--traceback`` shows the exception behind it instead."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cifar_bench import PluginError
from cifar_bench.commands.cli import main
from cifar_bench.hooks import manager

TINY_RUN = ["--dataset", "synthetic", "--limit-train", "40", "--limit-test", "20", "--epochs", "1",
            "--batch-size", "20", "--quiet", "--no-cache"]  # fmt: skip


@pytest.fixture(autouse=True)
def no_installed_plugins(monkeypatch):
    monkeypatch.setenv(manager.AUTOLOAD_ENV, "1")


@pytest.fixture
def plugin_file(tmp_path):
    def write(name: str, body: str) -> str:
        path = tmp_path / f"{name}.py"
        path.write_text("from cifar_bench import hookimpl, Recipe\nimport torch\n" + textwrap.dedent(body))
        return str(path)

    return write


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, f"expected one line, got: {err!r}"
    assert err.startswith("cifar-bench: error: ")
    return err


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "baseline", *TINY_RUN, "--results-dir", str(tmp_path / "results"), *extra]


# -- two plugins, one component name ------------------------------------------------


def test_same_component_name_from_two_plugins_names_both(plugin_file, capsys):
    body = """
        @hookimpl
        def register_models(register):
            register("twin", lambda hp: torch.nn.Flatten())
        """
    first, second = plugin_file("first_plugin", body), plugin_file("second_plugin", body)
    assert main(["-p", first, "-p", second, "list"]) == 2
    err = error_line(capsys)
    assert "model 'twin' is registered by both plugin 'first_plugin' and plugin 'second_plugin'" in err


def test_same_component_name_as_a_built_in_names_both(plugin_file, capsys):
    path = plugin_file(
        "shadow",
        """
        @hookimpl
        def register_optimizers(register):
            register("sgd", lambda params, hp: torch.optim.SGD(params, lr=hp["lr"]))
        """,
    )
    assert main(["list", "-p", path]) == 2
    err = error_line(capsys)
    assert "optimizer 'sgd' is registered by both plugin 'baseline' and plugin 'shadow'" in err
    assert "-p no:shadow" in err


def test_one_plugin_registering_a_name_twice(plugin_file, capsys):
    path = plugin_file(
        "stutter",
        """
        @hookimpl
        def register_losses(register):
            register("mine", lambda hp: torch.nn.CrossEntropyLoss())
            register("mine", lambda hp: torch.nn.CrossEntropyLoss())
        """,
    )
    assert main(["-p", path, "list"]) == 2
    assert "plugin 'stutter' registers loss 'mine' twice" in error_line(capsys)


# -- hooks that do not match their spec -----------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "@hookimpl\ndef register_models(regster):\n    pass\n",
            "register_models(regster) takes 'regster', which the hook does not pass; its arguments are (register)",
        ),
        (
            "@hookimpl\ndef epoch_end(run, epoch, extra):\n    pass\n",
            "epoch_end(run, epoch, extra) takes 'extra'",
        ),
        (
            "@hookimpl\ndef register_model(register):\n    pass\n",
            "'register_model' is not a cifar-bench hook: did you mean 'register_models'?",
        ),
    ],
    ids=["misspelt-argument", "extra-argument", "misspelt-hook"],
)
def test_bad_hook(plugin_file, tmp_path, capsys, body, message):
    path = plugin_file("badhook", body)

    assert main(["-p", path, "list"]) == 0  # listing still works ...
    out = capsys.readouterr().out
    assert any(line.split()[:3] == ["model", "net", "baseline"] for line in out.splitlines())
    assert f"broken plugin 'badhook': plugin 'badhook' (file) has a bad hook: {message}" in out

    assert main(["-p", path, *run_args(tmp_path)]) == 2  # ... running does not
    err = error_line(capsys)
    assert "plugin 'badhook' (file) has a bad hook" in err and message in err


def test_hook_with_fewer_arguments_than_the_spec_is_fine(plugin_file, capsys):
    # pluggy passes only the arguments an implementation asks for.
    path = plugin_file("fewer", "@hookimpl\ndef epoch_end(epoch):\n    pass\n")
    assert main(["-p", path, "plugins"]) == 0
    assert "broken" not in capsys.readouterr().out


# -- plugins that fail to import ------------------------------------------------------


def test_import_failure(plugin_file, tmp_path, capsys):
    path = plugin_file("needs_missing", "import cifar_bench_no_such_module\n")

    assert main(["list", "-p", path]) == 0
    assert (
        "broken plugin 'needs_missing': plugin 'needs_missing' (file) failed to import: "
        "ModuleNotFoundError: No module named 'cifar_bench_no_such_module'" in capsys.readouterr().out
    )

    assert main([*run_args(tmp_path), "-p", path]) == 2
    err = error_line(capsys)
    assert "plugin 'needs_missing' (file) failed to import" in err
    assert "-p no:needs_missing" in err

    with pytest.raises(PluginError) as raised:
        main(["--traceback", *run_args(tmp_path), "-p", path])
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)


def test_import_failure_of_a_module_plugin(capsys):
    assert main(["-p", "cifar_bench_no_such_plugin", "plugins"]) == 0
    assert (
        "broken plugin 'cifar_bench_no_such_plugin': plugin 'cifar_bench_no_such_plugin' (module) "
        "failed to import: ModuleNotFoundError" in capsys.readouterr().out
    )


def test_syntax_error_is_one_line(plugin_file, tmp_path, capsys):
    path = plugin_file("typo", "def broken(:\n")
    assert main([*run_args(tmp_path), "-p", path]) == 2
    assert "plugin 'typo' (file) failed to import: SyntaxError" in error_line(capsys)


# -- factories that return the wrong thing ----------------------------------------------


@pytest.mark.parametrize(
    ("kind", "hook", "factory", "expected"),
    [
        ("model", "register_models", "lambda hp: 'a model'", "model 'bad' returned str, expected torch.nn"),
        (
            "optimizer",
            "register_optimizers",
            "lambda params, hp: [torch.optim.SGD]",
            "optimizer 'bad' returned list, expected torch.optim",
        ),
        ("loss", "register_losses", "lambda hp: torch.nn.functional.cross_entropy", "loss 'bad' returned"),
        (
            "transform",
            "register_transforms",
            "lambda hp: (lambda x: x)",
            "transform 'bad' returned function, expected cifar_bench",
        ),
        (
            "scheduler",
            "register_schedulers",
            "lambda opt, hp, steps: 0.1",
            "scheduler 'bad' returned float, expected torch.optim.lr_scheduler.LRScheduler",
        ),
    ],
    ids=["model", "optimizer", "loss", "transform", "scheduler"],
)
def test_factory_returning_the_wrong_type(plugin_file, tmp_path, capsys, kind, hook, factory, expected):
    path = plugin_file(
        "wrongtype",
        f"""
        @hookimpl
        def {hook}(register):
            register("bad", {factory})
        """,
    )
    args = [*run_args(tmp_path), f"--{kind}", "bad", "-p", path]
    assert main(args) == 2
    err = error_line(capsys)
    assert f"plugin 'wrongtype': {expected}" in err

    with pytest.raises(PluginError, match="plugin 'wrongtype'"):
        main(["--traceback", *args])


# -- register hooks that fail or misuse register() ---------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "@hookimpl\ndef register_models(register):\n    raise KeyError('oops')\n",
            "plugin 'raiser': register_models failed: KeyError: 'oops'",
        ),
        (
            "@hookimpl\ndef register_models(register):\n    register('only_a_name', None)\n",
            "plugin 'raiser': register_models must call register(name, factory, description='')",
        ),
        (
            "@hookimpl\ndef register_recipes(register):\n    register({'name': 'r'})\n",
            "plugin 'raiser': register_recipes registered dict, expected cifar_bench.Recipe",
        ),
        (
            "@hookimpl\ndef register_recipes(register):\n"
            "    register(Recipe('r', model=None, loss='l', optimizer='o', transform='t'))\n",
            "plugin 'raiser': recipe 'r' needs a name string for model",
        ),
    ],
    ids=["raises", "bad-register-call", "recipe-not-a-Recipe", "recipe-without-model"],
)
def test_register_hook_errors_name_the_plugin(plugin_file, capsys, body, message):
    path = plugin_file("raiser", body)
    assert main(["-p", path, "list"]) == 2
    assert message in error_line(capsys)
