"""Generate Python stubs for every .proto under protos/ into the serendip package.

    python tools/gen_protos.py            # write serendip/api/**/*_pb2*.py
    python tools/gen_protos.py --check    # exit 1 if the committed stubs are stale

Stubs are committed so an install needs no codegen; tests/test_protos.py fails when they drift.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out_dir: Path) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc

    files = sorted(PROTOS.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(f) for f in files],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Exactly the modules protoc writes for our files (never scan out_dir: it may be the repo root).
    generated = []
    for f in files:
        stem = f.relative_to(PROTOS).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            generated.append(out_dir / f"{stem}{suffix}")
    # Packages need __init__.py files; protoc does not write them.
    inits = set()
    for g in generated:
        d = g.parent
        while d != out_dir:
            inits.add(d / "__init__.py")
            d = d.parent
    for init in inits:
        if not init.exists():
            init.write_text("")
    return sorted(generated + [i for i in inits if i.is_relative_to(out_dir / "serendip" / "api")])


def stale_files() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        fresh = generate(tmp_path)
        problems = []
        fresh_rel = {p.relative_to(tmp_path) for p in fresh}
        committed = {
            p.relative_to(ROOT)
            for p in (ROOT / "serendip" / "api").rglob("*")
            if p.suffix in {".py", ".pyi"} and "__pycache__" not in p.parts
        }
        for rel in sorted(fresh_rel):
            target = ROOT / rel
            if not target.exists() or not filecmp.cmp(tmp_path / rel, target, shallow=False):
                problems.append(str(rel))
        problems += [str(rel) for rel in sorted(committed - fresh_rel)]
        return problems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print("stale or missing stubs (run python tools/gen_protos.py):", *stale, sep="\n  ")
            sys.exit(1)
        print("stubs up to date")
        return
    for p in generate(ROOT):
        print(p.relative_to(ROOT))


if __name__ == "__main__":
    main()
