"""Generate Python stubs, Envoy's descriptor set and the OpenAPI document from protos/ (what
`make generate` runs).

The google/api and google/rpc protos come from googleapis-common-protos' install folder.
google/rpc/{status,error_details}.proto are compiled into the descriptor set so that Envoy
can render error details (ErrorInfo, BadRequest, RetryInfo) for REST clients.
"""

import pathlib
import sys
import tempfile

import google.api
import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
GOOGLEAPIS = pathlib.Path(google.api.__path__[0]).parent.parent
WELL_KNOWN = pathlib.Path(grpc_tools.__path__[0]) / "_proto"
ERROR_PROTOS = ["google/rpc/status.proto", "google/rpc/error_details.proto"]


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def _protoc(*args: str) -> None:
    if protoc.main(["protoc", f"-I{PROTOS}", f"-I{GOOGLEAPIS}", f"-I{WELL_KNOWN}", *args]) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")


def write_described(path: pathlib.Path) -> None:
    """A descriptor set with source info (comments): the OpenAPI generator's and buf lint's input."""
    _protoc("--include_imports", "--include_source_info", f"--descriptor_set_out={path}", *proto_files())


def generate(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = proto_files()
    _protoc(f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *files)
    _protoc("--include_imports", f"--descriptor_set_out={out / 'billing.pb'}", *files, *ERROR_PROTOS)
    with tempfile.TemporaryDirectory() as scratch:  # comments are descriptions: with source info
        described = pathlib.Path(scratch) / "described.pb"
        write_described(described)
        sys.path.insert(0, str(pathlib.Path(__file__).parent))
        import openapi

        (out / "openapi.json").write_text(openapi.render(described.read_bytes()))
    for package in {pathlib.Path(f).parent for f in files}:
        for part in [package, *package.parents][:-1]:
            (out / part / "__init__.py").touch()


if __name__ == "__main__":
    generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "generated")
