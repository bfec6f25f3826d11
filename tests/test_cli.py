"""The `tada` console entry point: subcommands with --help, and `tada generate` on every backend."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import yaml

from tada.cli import COMMANDS, build_parser, main
from tada.config import ROOT


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "generate" in out


@pytest.mark.parametrize("name", [c for c in COMMANDS
                                  if c in build_parser()._subparsers._group_actions[0].choices])
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert "usage: tada " + name in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "tada.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "generate" in out.stdout


def _config_for(tmp_path, block):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["models"] = {"m": block}
    cfg["model"] = "m"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("backend", ["stable_audio", "audioldm2", "ace_step15", "generic"])
def test_generate_writes_audio_on_every_backend(backend, tiny_model_config, tmp_path, single_thread):
    config = _config_for(tmp_path, tiny_model_config(backend))
    out = tmp_path / "x.wav"
    assert main(["generate", "a slow sad piano song", "--out", str(out), "--config", str(config),
                 "--seed", "3"]) == 0
    audio, sr = sf.read(out)
    assert sr > 0 and audio.shape[0] > 0 and np.isfinite(audio).all()
    # same seed, same file
    again = tmp_path / "y.wav"
    main(["generate", "a slow sad piano song", "--out", str(again), "--config", str(config), "--seed", "3"])
    assert np.array_equal(sf.read(again)[0], audio)


def test_generate_several_prompts_to_directory(tiny_model_config, tmp_path, single_thread):
    config = _config_for(tmp_path, tiny_model_config("stable_audio"))
    assert main(["generate", "a", "b", "c", "--out", str(tmp_path / "d"), "--config", str(config)]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["000.wav", "001.wav", "002.wav"]


def test_generate_reports_bad_config(tmp_path, capsys):
    config = _config_for(tmp_path, {"backend": "stable_audio", "path": str(tmp_path / "missing")})
    assert main(["generate", "x", "--out", str(tmp_path / "x.wav"), "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "models.m.path" in err
    assert not (tmp_path / "x.wav").exists()


def test_generate_cuda_without_cuda_is_an_error(tiny_model_config, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("machine has CUDA")
    config = _config_for(tmp_path, tiny_model_config("stable_audio"))
    assert main(["generate", "x", "--out", str(tmp_path / "x.wav"), "--config", str(config),
                 "--device", "cuda"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err
