"""A local protoc plugin for buf: Python messages and gRPC stubs via grpc_tools.

`grpc_python` is not a buf builtin and buf cannot reach remote plugins here, so
this wraps `grpc_tools.protoc`: it reads the CodeGeneratorRequest buf sends,
writes the files' descriptors to a FileDescriptorSet, runs protoc with
`--python_out` and `--grpc_python_out`, and answers with the files produced.
"""

import os
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    with tempfile.TemporaryDirectory() as tmp:
        fds = descriptor_pb2.FileDescriptorSet(file=request.proto_file)
        descriptor_path = os.path.join(tmp, "set.binpb")
        Path(descriptor_path).write_bytes(fds.SerializeToString())
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        args = [
            "protoc",
            f"--descriptor_set_in={descriptor_path}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *request.file_to_generate,
        ]
        if protoc.main(args) != 0:
            response.error = "grpc_tools.protoc failed"
        else:
            has_services = {f.name for f in request.proto_file if f.service}
            for path in sorted(Path(out).rglob("*.py")):
                name = str(path.relative_to(out))
                if (
                    name.endswith("_pb2_grpc.py")
                    and name[: -len("_pb2_grpc.py")] + ".proto" not in has_services
                ):
                    continue  # protoc writes an empty stub module for files without services
                response.file.add(name=name, content=path.read_text())
            # Make each generated folder a regular package.
            for folder in sorted({os.path.dirname(f) for f in request.file_to_generate}):
                response.file.add(name=os.path.join(folder, "__init__.py"), content="")
    sys.stdout.buffer.write(response.SerializeToString())


if __name__ == "__main__":
    main()
