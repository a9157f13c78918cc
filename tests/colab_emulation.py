"""Run a notebook's opening cells as Colab runs them, in a kernel of their own, with what Colab has and nothing more.

- The kernel's working directory is a fresh `content/` folder (Colab's `/content`; every "/content" in the cells
  points there), its `sys.path` lacks the repository and the editable install of `helpers` is switched off: as on a
  fresh runtime, `helpers` is not importable until the cells make it so.
- `google.colab` is imported (as Colab's kernel does) from a stand-in whose `drive.mount(path)` creates `path/MyDrive`
  (filled from a template folder) and refuses a mountpoint that already holds files, as the real one does.
- `git clone` is served from the local checkout (its tracked and untracked, non-ignored files), and only for the
  canonical URL at the release tag `v<pyproject version>`; `pip` records its arguments instead of installing.
- An audit hook records every open/listdir/scandir/mkdir under the Drive mountpoint before the mount.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPO_URL = "https://github.com/vlm-cookbook/vlm-cookbook"


def release_tag() -> str:
    """The git tag of the tested release: `v` + pyproject.toml's version."""
    return "v" + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


GIT_SHIM = '''#!{python}
"""git stand-in: `git clone [...] --branch TAG URL DEST` copies the local checkout; anything else fails."""
import json, shutil, sys
from pathlib import Path
args = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps(["git"] + args) + "\\n")
if not args or args[0] != "clone":
    sys.exit("git stand-in: only `git clone` is served")
branch = args[args.index("--branch") + 1] if "--branch" in args else None
url, dest = [a for a in args[1:] if not a.startswith("-") and a != branch][-2:]
if url.removesuffix(".git") != {url!r} or branch != {tag!r}:
    sys.exit(f"fatal: Remote branch {{branch}} not found in upstream origin (served: {url} at {tag})")
for rel in json.load(open({files!r})):
    target = Path(dest) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(Path({root!r}) / rel, target)
'''

PIP_SHIM = '''#!{python}
"""pip stand-in: records its arguments, installs nothing (an editable install stays invisible, as before a restart)."""
import json, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(["pip"] + sys.argv[1:]) + "\\n")
'''

DRIVE = '''"""google.colab.drive stand-in: mount() creates the folder it is given, with MyDrive from a template."""
import os, shutil

mounted = []
mounting = False  # the mount's own file operations are not reads of Drive by the notebook


def mount(mountpoint, force_remount=False, **kwargs):
    global mounting
    mounting = True
    try:
        if os.path.isdir(mountpoint) and os.listdir(mountpoint) and not force_remount:
            raise ValueError("Mountpoint must not already contain files")
        template = os.environ.get("COLAB_FAKE_DRIVE")
        if template:
            shutil.copytree(template, os.path.join(mountpoint, "MyDrive"), dirs_exist_ok=True)
        os.makedirs(os.path.join(mountpoint, "MyDrive"), exist_ok=True)
        mounted.append(mountpoint)
    finally:
        mounting = False
    print("Mounted at", mountpoint)
'''

SETUP = '''
import importlib, os, sys
from pathlib import Path
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in (getattr(f, "__module__", "") or "")]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in (getattr(h, "__module__", "") or "")]
sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "helpers" / "__init__.py").exists()]
importlib.invalidate_caches()
sys.path_importer_cache.clear()
import google.colab
from google.colab import drive as _colab_drive
_DRIVE = {drive!r}
_drive_reads_before_mount = []
def _colab_audit(event, args, _reads=_drive_reads_before_mount, _drive=_colab_drive):
    if event in ("open", "os.listdir", "os.scandir", "os.mkdir") and args and not (_drive.mounted or _drive.mounting):
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path).startswith(_DRIVE):
            _reads.append((event, os.fsdecode(path)))
sys.addaudithook(_colab_audit)
assert importlib.util.find_spec("helpers") is None, "the emulation must start without an importable helpers"
assert os.getcwd() == {content!r}
assert sys.prefix == {prefix!r}, "the kernel must run in the test's environment"
'''


@dataclass
class Run:
    """What the opening cells did: the error of the first failing cell (or None), and what was recorded."""

    error: str | None
    calls: list[list[str]] = field(default_factory=list)
    helpers_file: str | None = None
    mounted: list[str] = field(default_factory=list)
    drive_reads_before_mount: list[list[str]] = field(default_factory=list)


def checkout_files() -> list[str]:
    """Tracked and untracked, non-ignored files of the local checkout (what a clone of it would hold)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    return [f for f in out if (ROOT / f).is_file()]


def prepare(tmp: Path, drive_template: Path | None = None) -> tuple[Path, dict[str, str]]:
    """Build content/, the shims and the fake google.colab under `tmp`; return (content dir, kernel environment)."""
    content, bin_dir, site = tmp / "content", tmp / "bin", tmp / "site"
    content.mkdir()
    bin_dir.mkdir()
    (site / "google" / "colab").mkdir(parents=True)  # `google` stays a namespace package (protobuf's lives there too)
    (site / "google" / "colab" / "__init__.py").write_text('"""google.colab stand-in."""\n')
    (site / "google" / "colab" / "drive.py").write_text(DRIVE)
    files, log = tmp / "files.json", tmp / "calls.jsonl"
    files.write_text(json.dumps(checkout_files()))
    fill = dict(python=sys.executable, log=str(log), files=str(files), root=str(ROOT), url=REPO_URL, tag=release_tag())
    for name, text in (("git", GIT_SHIM), ("pip", PIP_SHIM)):
        (bin_dir / name).write_text(text.format(**fill))
        (bin_dir / name).chmod(0o755)
    # none of the tiny environment's start-up code (sitecustomize on PYTHONPATH, the kernel profile in IPYTHONDIR)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "IPYTHONDIR", "TINY_ENV_HOME")}
    env.update(PYTHONPATH=str(site), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", MPLBACKEND="Agg")
    if drive_template is not None:
        env["COLAB_FAKE_DRIVE"] = str(drive_template)
    return content, env


def as_colab(source: str, content: Path) -> str:
    """The cell as it runs here: Colab's /content is the emulation's content folder."""
    return source.replace("/content", str(content))


def run_cells(sources: list[str], tmp: Path, drive_template: Path | None = None, timeout: float = 300) -> Run:
    """Run `sources` (Colab cells, IPython syntax) one by one in an emulated Colab kernel; stop at the first error."""
    from jupyter_client.manager import KernelManager

    content, env = prepare(tmp, drive_template)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(content), env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        error = _execute(kc, SETUP.format(drive=str(content / "drive"), content=str(content), prefix=sys.prefix), timeout)
        if error:
            raise RuntimeError(f"emulation set-up failed: {error}")
        for source in sources:
            error = _execute(kc, as_colab(source, content), timeout)
            if error:
                break
        probe = textwrap.dedent("""
            import json, sys
            import importlib.util
            _helpers = importlib.util.find_spec("helpers")  # what a later cell's `from helpers... import` would load
            print("@@" + json.dumps({"helpers": _helpers.origin if _helpers else None,
                                     "mounted": _colab_drive.mounted, "reads": _drive_reads_before_mount}))
        """)
        state = json.loads(_execute(kc, probe, timeout, capture=True).split("@@", 1)[1])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    log = tmp / "calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return Run(error=error, calls=calls, helpers_file=state["helpers"], mounted=state["mounted"],
               drive_reads_before_mount=state["reads"])


def _execute(kc, code: str, timeout: float, capture: bool = False) -> str | None:
    """Run `code`; return its error as 'Name: value' (or, with `capture`, its stdout)."""
    out: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])

    try:
        reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook, allow_stdin=False)
    except (TimeoutError, queue.Empty):
        return "TimeoutError: the cell did not finish"
    if capture:
        return "".join(out)
    content = reply["content"]
    return None if content["status"] == "ok" else f"{content.get('ename')}: {content.get('evalue')}"


def opening_cells(cells: list) -> list[str]:
    """The code cells a notebook runs before its first numbered section (`## 1.`): its opening."""
    out = []
    for cell in cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            break
        if cell.cell_type == "code":
            out.append(cell.source)
    return out

