"""A Google Cloud Storage stand-in on 127.0.0.1 (run as a script): gcp-storage-emulator with bucket
``bucket``, in memory, plus the two calls its clients here need and it lacks.

``python gcs_emulator.py`` prints ``PORT`` once it serves, then serves until killed. Point the
clients at it with :func:`client_environment`: gcsfs (``STORAGE_EMULATOR_HOST``), TensorStore
(``TENSORSTORE_GCS_HTTP_URL``) and ArrayRecord's google-cloud-cpp
(``CLOUD_STORAGE_EMULATOR_ENDPOINT``), all without credentials; Google's metadata server is
pointed at a closed port on 127.0.0.1, so no client looks for credentials elsewhere.

Added: ``moveTo`` (gcsfs renames with it; the emulator answers 501 and gcsfs retries for seconds
before copying) and the ``startOffset``/``endOffset`` bounds of a listing (TensorStore lists key
ranges with them; the emulator ignores them and lists the whole prefix).
"""

from __future__ import annotations

import re
import socket
import sys
import time

BUCKET = "bucket"


def client_environment(port: int) -> dict[str, str]:
    """Environment variables that send gcsfs, TensorStore and ArrayRecord to the stand-in."""
    url = f"http://127.0.0.1:{port}"
    return {
        "STORAGE_EMULATOR_HOST": url,
        "FSSPEC_GS_TOKEN": "anon",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # (no gRPC bucket-type probe)
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "anon",
        "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": "127.0.0.1:1",
        "GCE_METADATA_IP": "127.0.0.1:1",
        "EPATH_USE_TF": "false",  # epath through gcsfs, as with the gcs extra and no TensorFlow
    }


def _patch(server_module, objects) -> None:
    original_ls = objects.ls

    def move(request, response, storage, *args, **kwargs):
        request.params["dest_bucket_name"] = request.params["bucket_name"]
        objects.copy(request, response, storage)
        if response.status == 200:
            storage.delete_file(request.params["bucket_name"], request.params["object_id"])

    def ls(request, response, storage, *args, **kwargs):
        first = (request.query.get("startOffset") or [""])[0]
        end = (request.query.get("endOffset") or [None])[0]
        if not first and end is None:
            return original_ls(request, response, storage)
        prefix = (request.query.get("prefix") or [None])[0]
        files, _ = storage.get_file_list(request.params["bucket_name"], prefix, None)
        items = [f for f in files if f["name"] >= first and (end is None or f["name"] < end)]
        response.json({"kind": "storage#objects", "prefixes": [], "items": items})

    api = re.escape("/storage/v1")
    move_route = (
        rf"^{api}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)/moveTo/o/(?P<dest_object_id>.*[^/]+)$",
        {"POST": move},
    )
    routes = [
        (pattern, {m: ls if h is original_ls else h for m, h in handlers.items()})
        for pattern, handlers in server_module.HANDLERS
    ]
    server_module.HANDLERS = (move_route, *routes)


def main() -> int:
    import logging

    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    logging.disable(logging.INFO)
    _patch(server, objects)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    emulator = server.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    emulator.start()
    print(port, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
