"""A write that fails part-way (a full disk, a quota, a file-size limit) is a one-line error naming what was
being written, and replaces nothing: the previous checkpoint or export stays whole.

Each case runs in a child process whose file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored) makes the
large write fail the way a full disk does: the OS refuses the bytes and the writer raises.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("resource", reason="file-size limits need the POSIX resource module")

LIMITED_WRITE = """
import resource, signal, sys
from pathlib import Path
import torch
from llara.errors import LlaraError

def limit(size):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

root, size, cap = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
model = torch.nn.Linear(size, size)
"""

CHECKPOINT = LIMITED_WRITE + """
from llara.training.checkpointing import list_checkpoints, read_checkpoint, save_checkpoint
optimizer = torch.optim.AdamW(model.parameters())
model(torch.ones(1, size)).sum().backward()
optimizer.step()
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
save_checkpoint(root, 1, model, optimizer, scheduler, [torch.zeros(4)], {})
limit(cap)
try:
    save_checkpoint(root, 2, model, optimizer, scheduler, [torch.zeros(4)], {})
except LlaraError as exc:
    print("error:", exc)
print("left:", sorted(path.name for path in root.iterdir()))
read_checkpoint(list_checkpoints(root)[-1])
"""

SR_CHECKPOINT = LIMITED_WRITE + """
from llara.sr.checkpoint import load_sr, save_sr
from llara.sr.registry import build_sr
sr = build_sr("sasrec", size, 64, 10)
save_sr(sr, root / "sr")
limit(cap)
try:
    save_sr(build_sr("sasrec", size, 64, 10), root / "sr", force=True)
except LlaraError as exc:
    print("error:", exc)
print("left:", sorted(path.name for path in root.iterdir()))
load_sr(root / "sr")
"""


def run_limited(script: str, root: Path, size: int, cap: int) -> list[str]:
    root.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script, str(root), str(size), str(cap)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


@pytest.mark.parametrize(
    ("size", "cap", "failing"),
    [(256, 64 * 1024, "trainable.safetensors"), (64, 24_000, "optimizer.pt")],
    ids=["weights-fail", "optimizer-fails"],
)
def test_a_checkpoint_that_cannot_be_written_is_one_line_and_keeps_the_last(
    tmp_path: Path, size: int, cap: int, failing: str
) -> None:
    error, left = run_limited(CHECKPOINT, tmp_path / "run", size, cap)
    assert error.startswith("error: could not write ") and "step-00000002" in error and "free some space" in error
    assert ".tmp" not in error.split(" (")[0]  # names the checkpoint, not the temporary folder
    assert left == "left: ['step-00000001']"  # the half-written step 2 is gone, step 1 still reads back


def test_an_sr_checkpoint_that_cannot_be_written_keeps_the_old_one(tmp_path: Path) -> None:
    error, left = run_limited(SR_CHECKPOINT, tmp_path / "out", 3000, 64 * 1024)
    assert error.startswith("error: could not write ") and error.split(" (")[0].endswith("/sr")
    assert left == "left: ['sr']"
