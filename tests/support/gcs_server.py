"""A Google Cloud Storage stand-in on 127.0.0.1: the JSON API calls that gcsfs, TensorStore and
ArrayRecord (google-cloud-cpp) make, in memory, for one bucket.

Run as a script (``python gcs_server.py``): it prints its port, then serves until killed.
:func:`client_environment` points the three clients at it, without credentials; Google's metadata
server is pointed at a closed port on 127.0.0.1, so no client looks for credentials elsewhere.

Served: bucket metadata; object metadata, download (``alt=media``, ``Range``), upload (``media``,
``multipart``, ``resumable``), delete, listing (``prefix``, ``delimiter``, ``startOffset``,
``endOffset``), ``rewriteTo``/``copyTo``/``moveTo``; the preconditions ``ifGenerationMatch`` and
``ifGenerationNotMatch``, which TensorStore's OCDBT manifests rely on. Generations count up from 1.
"""

from __future__ import annotations

import contextlib
import datetime
import email.parser
import email.policy
import http.server
import itertools
import json
import os
import re
import sys
import threading
import urllib.parse
import urllib.request

BUCKET = "bucket"
_OBJECT = r"/(?:download/)?storage/v1/b/(?P<bucket>[^/]+)/o/(?P<name>[^/?]+)"
_COPY = re.compile(_OBJECT + r"/(?P<verb>rewriteTo|copyTo)/b/(?P<dest_bucket>[^/]+)/o/(?P<dest>[^/?]+)$")
_MOVE = re.compile(_OBJECT + r"/moveTo/o/(?P<dest>[^/?]+)$")
_ONE = re.compile(_OBJECT + "$")
_LIST = re.compile(r"/storage/v1/b/(?P<bucket>[^/]+)/o$")
_UPLOAD = re.compile(r"/upload/storage/v1/b/(?P<bucket>[^/]+)/o$")
_BUCKET = re.compile(r"/storage/v1/b/(?P<bucket>[^/]+)$")


def client_environment(port: int) -> dict[str, str]:
    """Environment variables that send gcsfs, TensorStore and ArrayRecord to the stand-in."""
    url = f"http://127.0.0.1:{port}"
    return {
        "STORAGE_EMULATOR_HOST": url,  # gcsfs
        "FSSPEC_GS_TOKEN": "anon",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # (no gRPC bucket-type probe)
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "anon",
        "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,  # google-cloud-cpp, inside ArrayRecord
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": "127.0.0.1:1",
        "GCE_METADATA_IP": "127.0.0.1:1",
        "EPATH_USE_TF": "false",  # etils.epath through gcsfs, as with the gcs extra and no TensorFlow
    }


def upload_tree(port: int, folder: str, prefix: str) -> int:
    """Copies every file under ``folder`` to ``gs://bucket/PREFIX/...``; returns how many."""
    count = 0
    for root, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(root, n)
            key = f"{prefix}/{os.path.relpath(path, folder)}"
            query = urllib.parse.urlencode({"uploadType": "media", "name": key})
            url = f"http://127.0.0.1:{port}/upload/storage/v1/b/{BUCKET}/o?{query}"
            with open(path, "rb") as f, urllib.request.urlopen(urllib.request.Request(url, f.read())):
                count += 1
    return count


def list_names(port: int, prefix: str) -> list[str]:
    """The object names under ``prefix``."""
    query = urllib.parse.urlencode({"prefix": prefix})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/storage/v1/b/{BUCKET}/o?{query}") as r:
        return [item["name"] for item in json.load(r)["items"]]


def download(port: int, name: str) -> bytes:
    """The bytes of object ``name``."""
    quoted = urllib.parse.quote(name, safe="")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/storage/v1/b/{BUCKET}/o/{quoted}?alt=media") as r:
        return r.read()


class Store:
    """Objects by name: ``(data, generation, updated)``; one lock for all."""

    def __init__(self):
        self.objects: dict[str, tuple[bytes, int, str]] = {}
        self.uploads: dict[str, tuple[str, bytearray, dict]] = {}
        self.lock = threading.Lock()
        self._generations = itertools.count(1)

    def put(self, name: str, data: bytes) -> dict:
        updated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.objects[name] = (bytes(data), next(self._generations), updated)
        return self.resource(name)

    def resource(self, name: str) -> dict:
        data, generation, updated = self.objects[name]
        return {
            "kind": "storage#object",
            "bucket": BUCKET,
            "name": name,
            "id": f"{BUCKET}/{name}/{generation}",
            "size": str(len(data)),
            "generation": str(generation),
            "metageneration": "1",
            "contentType": "application/octet-stream",
            "storageClass": "STANDARD",
            "timeCreated": updated,
            "updated": updated,
        }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: Store
    _held: list | None = None  # responses waiting for the store's lock to be released

    def log_message(self, format, *args):  # quiet
        pass

    # --- plumbing -------------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    @contextlib.contextmanager
    def _locked(self):
        """The store's lock. A response made while it is held is sent after it is released, so one
        slow client does not hold up every other request."""
        self._held = []
        try:
            with self.store.lock:
                yield
        finally:
            held, self._held = self._held, None
        for response in held:
            self._write(*response)

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        if self._held is not None:
            self._held.append((status, body, headers))
        else:
            self._write(status, body, headers)

    def _write(self, status: int, body: bytes, headers: dict | None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, document: dict, headers: dict | None = None) -> None:
        self._send(
            status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})}
        )

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"code": status, "message": message, "errors": [{"message": message}]}})

    def _route(self):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        return url.path, query

    def _preconditions_fail(self, name: str, query: dict) -> int | None:
        """412 or 304 when ``ifGenerationMatch``/``ifGenerationNotMatch`` rule the request out."""
        current = self.store.objects[name][1] if name in self.store.objects else 0
        if "ifGenerationMatch" in query and int(query["ifGenerationMatch"]) != current:
            return 412
        if "ifGenerationNotMatch" in query and int(query["ifGenerationNotMatch"]) == current:
            return 304
        return None

    # --- verbs ----------------------------------------------------------------------------------

    def do_GET(self):
        path, query = self._route()
        with self._locked():
            if m := _BUCKET.fullmatch(path):
                return self._json(200, {"kind": "storage#bucket", "name": m["bucket"], "id": m["bucket"]})
            if m := _LIST.fullmatch(path):
                return self._list(query)
            if m := _ONE.fullmatch(path):
                return self._get(urllib.parse.unquote(m["name"]), query)
        self._error(404, f"no route for GET {path}")

    def _list(self, query: dict) -> None:
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        first, end = query.get("startOffset", ""), query.get("endOffset")
        items, prefixes = [], set()
        for name in sorted(self.store.objects):
            if not name.startswith(prefix) or name < first or (end and name >= end):
                continue
            rest = name[len(prefix) :]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter)[0] + delimiter)
            else:
                items.append(self.store.resource(name))
        self._json(200, {"kind": "storage#objects", "items": items, "prefixes": sorted(prefixes)})

    def _get(self, name: str, query: dict) -> None:
        if name not in self.store.objects:
            return self._error(404, f"No such object: {BUCKET}/{name}")
        failed = self._preconditions_fail(name, query)
        if failed:
            return self._send(failed) if failed == 304 else self._error(failed, "precondition failed")
        if query.get("alt") != "media":
            return self._json(200, self.store.resource(name))
        data, generation, _ = self.store.objects[name]
        headers = {
            "Content-Type": "application/octet-stream",
            "x-goog-generation": str(generation),
            "x-goog-metageneration": "1",
            "x-goog-stored-content-length": str(len(data)),
            "x-goog-stored-content-encoding": "identity",
        }
        wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if not wanted:
            return self._send(200, data, headers)
        start = int(wanted[1]) if wanted[1] else max(0, len(data) - int(wanted[2]))
        stop = min(len(data) - 1, int(wanted[2])) if wanted[1] and wanted[2] else len(data) - 1
        if start >= len(data) and len(data):
            return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        part = data[start : stop + 1]
        self._send(
            206, part, {**headers, "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}"}
        )

    def do_DELETE(self):
        path, query = self._route()
        with self._locked():
            m = _ONE.fullmatch(path)
            name = urllib.parse.unquote(m["name"]) if m else None
            if name not in self.store.objects:
                return self._error(404, f"No such object: {BUCKET}/{name}")
            if self._preconditions_fail(name, query):
                return self._error(412, "precondition failed")
            del self.store.objects[name]
        self._send(204)

    def do_POST(self):
        path, query = self._route()
        body = self._body()
        with self._locked():
            if _UPLOAD.fullmatch(path):
                return self._chunk(query, body) if "upload_id" in query else self._upload(query, body)
            if m := _COPY.fullmatch(path):
                return self._copy(urllib.parse.unquote(m["name"]), urllib.parse.unquote(m["dest"]), m["verb"])
            if m := _MOVE.fullmatch(path):
                return self._copy(urllib.parse.unquote(m["name"]), urllib.parse.unquote(m["dest"]), "moveTo")
        self._error(404, f"no route for POST {path}")

    def _copy(self, source: str, target: str, verb: str) -> None:
        if source not in self.store.objects:
            return self._error(404, f"No such object: {BUCKET}/{source}")
        resource = self.store.put(target, self.store.objects[source][0])
        if verb == "moveTo":
            del self.store.objects[source]
        if verb == "rewriteTo":
            size = resource["size"]
            document = {"kind": "storage#rewriteResponse", "done": True, "resource": resource}
            return self._json(200, {**document, "totalBytesRewritten": size, "objectSize": size})
        self._json(200, resource)

    def _upload(self, query: dict, body: bytes) -> None:
        kind = query.get("uploadType", "media")
        if kind == "multipart":
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
            )
            meta_part, data_part = list(message.iter_parts())[:2]
            metadata = json.loads(meta_part.get_payload(decode=True) or b"{}")
            name, data = metadata.get("name") or query.get("name"), data_part.get_payload(decode=True)
        else:
            metadata = json.loads(body or b"{}") if kind == "resumable" else {}
            name, data = query.get("name") or metadata.get("name"), body
        failed = self._preconditions_fail(name, query)
        if failed:
            return self._error(412, "precondition failed")
        if kind == "resumable":
            upload = f"u{len(self.store.uploads)}"
            self.store.uploads[upload] = (name, bytearray(), query)
            host = self.headers.get("Host")
            location = f"http://{host}/upload/storage/v1/b/{BUCKET}/o?uploadType=resumable&upload_id={upload}"
            return self._send(200, b"", {"Location": location})
        self._json(200, self.store.put(name, data))

    def do_PUT(self):
        path, query = self._route()
        body = self._body()
        with self._locked():
            if _UPLOAD.fullmatch(path) and "upload_id" in query:
                return self._chunk(query, body)
        self._error(404, f"no route for PUT {path}")

    def _chunk(self, query: dict, body: bytes) -> None:
        """One chunk of a resumable upload (``Content-Range: bytes A-B/TOTAL`` or ``*``)."""
        upload = query["upload_id"]
        if upload not in self.store.uploads:
            return self._error(404, f"no upload {upload}")
        name, data, first_query = self.store.uploads[upload]
        span = re.fullmatch(
            r"bytes (\*|(\d+)-(\d+))/(\*|\d+)", self.headers.get("Content-Range", "bytes */*")
        )
        if span and span[2] is not None:
            del data[int(span[2]) :]
        data += body
        total = span[4] if span else str(len(data))
        if total == "*" or int(total) > len(data):
            return self._send(308, b"", {"Range": f"bytes=0-{len(data) - 1}"} if data else {})
        del self.store.uploads[upload]
        if self._preconditions_fail(name, first_query):
            return self._error(412, "precondition failed")
        self._json(200, self.store.put(name, bytes(data)))


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # TensorStore and gcsfs open many connections at once


def main() -> int:
    Handler.store = Store()
    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
