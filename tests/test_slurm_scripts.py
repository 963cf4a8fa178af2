"""The SLURM templates: valid bash, a consistent header, and commands the real CLI parses.

Each script runs under bash with the environment sbatch would give it (from its own header) and
a fake ``srun`` on PATH that records its arguments; the recorded ``fit`` command then goes
through LightningCLI's parser (``--print_config``: parse, no run).
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "scripts" / "slurm").glob("*.sbatch"))
FAKE_SRUN = '#!/bin/bash\nn=$(ls "$SRUN_LOG" | wc -l)\nprintf "%s\\0" "$@" > "$SRUN_LOG/call$n"\n'
JOB_ID = "4242"


def header(script: Path) -> dict[str, str]:
    """``#SBATCH --key=value`` lines → {key: value} (flags without a value map to "")."""
    out = {}
    for line in script.read_text().splitlines():
        m = re.match(r"#SBATCH\s+--([\w-]+)(?:[= ](\S+))?", line)
        if m:
            out[m.group(1)] = m.group(2) or ""
    return out


def run_script(script: Path, tmp: Path, *extra: str, gpus_on_node: str | None = None):
    """Run ``script`` as sbatch would (env from its header); return (returncode, srun calls, stderr)."""
    h = header(script)
    bin_dir, log = tmp / "bin", tmp / "srun_calls"
    bin_dir.mkdir(exist_ok=True)
    log.mkdir(exist_ok=True)
    for old in log.iterdir():
        old.unlink()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", SRUN_LOG=str(log), SLURM_JOB_ID=JOB_ID,
               SLURM_JOB_NAME=h["job-name"], SLURM_NNODES=h["nodes"], SLURM_NTASKS_PER_NODE=h["ntasks-per-node"],
               SLURM_GPUS_ON_NODE=gpus_on_node or h["gres"].rsplit(":", 1)[1], SLURM_CPUS_PER_TASK=h["cpus-per-task"],
               SLURM_SUBMIT_DIR=str(REPO), LIGHTNING_SER_CACHE=str(tmp / "cache"), RUN_DIR=str(tmp / "run"))
    proc = subprocess.run(["bash", str(script), *extra], env=env, cwd=tmp, capture_output=True, text=True,
                          timeout=60)
    calls = [p.read_bytes().decode().split("\0")[:-1] for p in sorted(log.iterdir(), key=lambda p: int(p.name[4:]))]
    return proc.returncode, calls, proc.stderr


def lightning_ser_args(call: list[str]) -> list[str]:
    i = call.index("python")
    assert call[i + 1: i + 3] == ["-m", "lightning_ser"], call
    return call[i + 3:]


def parsed_fit_config(args: list[str], capsys, monkeypatch) -> dict:
    from lightning_ser.cli import run_lightning

    monkeypatch.chdir(REPO)  # -c configs/... is relative to the submit dir
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_lightning([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_there_are_single_and_multi_node_templates():
    assert {s.name for s in SCRIPTS} >= {"train_single_node.sbatch", "train_multi_node.sbatch"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_valid_bash_with_a_consistent_header(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    h = header(script)
    gpus = int(re.fullmatch(r"gpu(?::\w+)?:(\d+)", h["gres"]).group(1))
    assert int(h["ntasks-per-node"]) == gpus  # Lightning: one task per device
    assert re.fullmatch(r"SIGUSR1@\d+", h["signal"]) and "requeue" in h
    assert re.search(r"^\s*srun\b.*python -m lightning_ser fit", script.read_text(), re.M)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_srun_commands_parse_with_the_real_cli(script, tmp_path, capsys, monkeypatch):
    h = header(script)
    rc, calls, err = run_script(script, tmp_path, "--model.lr", "0.0003")
    assert rc == 0, err
    assert [lightning_ser_args(c)[0] for c in calls] == ["prepare", "fit"]

    from lightning_ser.commands.prepare import build_datamodule

    dm, _ = build_datamodule(lightning_ser_args(calls[0])[1:], "prepare")
    assert dm.cache_dir == tmp_path / "cache"  # the store goes to the shared cache

    cfg = parsed_fit_config(lightning_ser_args(calls[1]), capsys, monkeypatch)
    trainer = cfg["trainer"]
    assert trainer["num_nodes"] == int(h["nodes"])
    assert int(trainer["devices"]) == int(h["ntasks-per-node"])  # the CLI keeps "4" as str; Lightning accepts it
    assert trainer["strategy"] == "ddp" and trainer["accelerator"] == "gpu"
    (env,) = trainer["plugins"]
    assert env["class_path"].endswith("SLURMEnvironment") and env["init_args"]["auto_requeue"] is True
    assert trainer["default_root_dir"] == str(tmp_path / "run")
    assert trainer["logger"]["init_args"]["version"] == JOB_ID  # same W&B run and checkpoint dir after requeue
    assert cfg["data"]["cache_dir"] == str(tmp_path / "cache")
    assert cfg["model"]["lr"] == pytest.approx(3e-4)  # extra sbatch arguments reach fit
    assert cfg["ckpt_path"] == "last"  # nothing to resume yet


def test_requeued_job_resumes_from_the_newest_checkpoint(tmp_path):
    script = REPO / "scripts" / "slurm" / "train_single_node.sbatch"
    run = tmp_path / "run"
    last = run / "lightning_ser" / JOB_ID / "checkpoints" / "last.ckpt"
    hpc = run / "hpc_ckpt_1.ckpt"
    last.parent.mkdir(parents=True)
    for path, age in ((last, 100), (hpc, 10)):  # the auto-requeue checkpoint is newer
        path.write_bytes(b"")
        os.utime(path, (time.time() - age,) * 2)

    def resumed_from() -> str:
        rc, calls, err = run_script(script, tmp_path)
        assert rc == 0, err
        args = lightning_ser_args(calls[-1])
        return args[args.index("--ckpt_path") + 1]

    assert resumed_from() == str(hpc)
    os.utime(last)  # an epoch finished after the requeue checkpoint
    assert resumed_from() == str(last)


def test_gpu_count_different_from_tasks_per_node_stops_before_srun(tmp_path):
    script = REPO / "scripts" / "slurm" / "train_multi_node.sbatch"
    tasks = int(header(script)["ntasks-per-node"])
    rc, calls, err = run_script(script, tmp_path, gpus_on_node=str(tasks + 1))
    assert rc != 0 and calls == [] and "one task per GPU" in err


def test_slurm_trainer_config_builds_the_auto_requeue_environment(tmp_path, monkeypatch):
    import signal

    from lightning.fabric.plugins.environments import SLURMEnvironment

    from lightning_ser.cli import run_lightning

    for key, value in dict(SLURM_JOB_ID=JOB_ID, SLURM_JOB_NAME="ser", SLURM_NODEID="0", SLURM_PROCID="0",
                           SLURM_LOCALID="0", SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1",
                           SLURM_NODELIST="node1").items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(REPO)
    cli = run_lightning(["-c", "configs/trainer/slurm.yaml", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
                         "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)], run=False)
    env = cli.trainer._accelerator_connector.cluster_environment
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal == signal.SIGUSR1
