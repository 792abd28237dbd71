"""Thread counts, the local server's command line, and per-run memos (issue 16)."""

import os
import sys

import pytest

from pipelines import embeddings, threads, tokens
from pipelines.errors import UserError
from pipelines.models import llama_server, local_server


def test_threads_are_cores_divided_by_parallel_jobs(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    assert threads.choose() == 8
    assert threads.choose(parallel_jobs=3) == 2
    assert threads.choose(parallel_jobs=16) == 1
    assert threads.choose(setting=5, parallel_jobs=4) == 5  # run.threads wins
    with pytest.raises(UserError, match="run.threads"):
        threads.choose(setting=0)


def test_configure_applies_to_env_torch_and_llama_server(monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    try:
        assert threads.configure(None, parallel_jobs=2) == 2
        assert all(os.environ[v] == "2" for v in threads.ENV_VARS)
        assert torch.get_num_threads() == 2
        cmd = local_server.command(tmp_path / "m.gguf", 8080, n_ctx=4096)
        assert cmd[cmd.index("--n_threads") + 1] == "2" and cmd[cmd.index("--n_threads_batch") + 1] == "2"
    finally:
        torch.set_num_threads(before)
        threads._chosen = None


def test_local_server_runs_without_logits_for_every_position(tmp_path):
    cmd = local_server.command(tmp_path / "m.gguf", 8080, n_ctx=4096, n_threads=3, n_batch=256)
    assert cmd[:3] == [sys.executable, "-m", "pipelines.models.llama_server"]
    args = dict(zip(cmd[3::2], cmd[4::2]))
    assert args["--logits_all"] == "false"  # llama-cpp-python's server defaults to true
    assert args["--n_threads"] == args["--n_threads_batch"] == "3"
    assert args["--n_batch"] == args["--n_ubatch"] == "256"
    assert args["--n_ctx"] == "4096"


def test_the_server_parses_our_command_line_into_the_settings_we_mean(tmp_path):
    import argparse

    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, Settings

    cmd = local_server.command(tmp_path / "m.gguf", 8080, n_ctx=4096, n_threads=3, n_batch=256, flash_attn=True)
    parser = argparse.ArgumentParser()
    add_args_from_model(parser, Settings)
    settings = parse_model_from_args(ModelSettings, parser.parse_args(cmd[3:]))
    assert settings.logits_all is False and settings.flash_attn is True
    assert (settings.n_threads, settings.n_threads_batch, settings.n_batch, settings.n_ubatch) == (3, 3, 256, 256)


@pytest.mark.parametrize("cached, prompt, expected", [
    ([1] * 700, [1] * 700 + [2] * 10, 512),   # shared 700: keep one whole batch of 512
    ([1] * 300 + [3], [1] * 300 + [2], 0),    # shared 300 < one batch: evaluate from scratch
    ([1] * 1100, [1] * 1024, 512),            # whole prompt cached, 2 batches: redo the last one
    ([5, 6], [7, 8], 0),
])
def test_reused_prefix_is_whole_batches(cached, prompt, expected):
    assert llama_server.aligned_prefix(cached, prompt, 512) == expected


def test_primed_questions_are_embedded_once_in_one_batch():
    embedder = embeddings.load()
    embedder.prime(["Where is the river?", "How old is the star?", "Where is the river?"])
    embedded = embedder.texts_embedded
    one = embedder.embed(["How old is the star?"])
    assert embedder.texts_embedded == embedded  # served from the memo
    fresh = embedder.model.encode(["How old is the star?"], normalize_embeddings=True)
    assert abs(one - fresh).max() < 1e-5


def test_token_counts_are_memoised(monkeypatch):
    text = "A long prompt that is counted many times. " * 50
    expected = tokens.count(text)
    monkeypatch.setattr(tokens, "encode", lambda t: pytest.fail("re-encoded"))
    assert tokens.count(text) == expected


def test_a_ray_job_takes_the_cpus_ray_gave_it_not_the_machines(monkeypatch):
    """Ray runs as many jobs on a node as its CPUs allow for their `num_cpus` (1 unless the launcher says
    otherwise), so each job's pools get its assigned CPUs; the node's core count would oversubscribe."""
    from types import SimpleNamespace

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assigned = {"CPU": 1.0}
    fake_ray = SimpleNamespace(is_initialized=lambda: True,
                               get_runtime_context=lambda: SimpleNamespace(get_assigned_resources=lambda: assigned))
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    assert threads.choose() == 1
    assigned["CPU"] = 3.0
    assert threads.choose() == 3
    assert threads.choose(setting=5) == 5  # run.threads still wins
    assigned.clear()  # a task without CPUs: the machine's cores as before
    assert threads.choose() == 8

    def driver():
        raise AssertionError("This method is only available when the process is a worker.")  # as Ray does

    fake_ray.get_runtime_context = lambda: SimpleNamespace(get_assigned_resources=driver)
    assert threads.choose() == 8
