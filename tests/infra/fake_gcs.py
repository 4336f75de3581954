"""A loopback Cloud Storage for google-cloud-storage: the JSON API paths the
client sends, the OAuth token endpoint of a service account, and V4 signed-URL
GETs (what a node's fetch script sends). Objects live in memory.

What it speaks (google-cloud-storage 3.x with STORAGE_EMULATOR_HOST pointing here):

    POST   /token                                        JWT-bearer grant -> access token
    POST   /storage/v1/b?project=P                       create a bucket (409 when the name is held)
    GET    /storage/v1/b/{bucket}                        bucket
    DELETE /storage/v1/b/{bucket}                        delete an empty bucket (409 when it is not)
    GET    /storage/v1/b/{bucket}/o?prefix=&maxResults=&pageToken=   list, paginated
    GET    /storage/v1/b/{bucket}/o/{object}             metadata (alt=media: the bytes)
    DELETE /storage/v1/b/{bucket}/o/{object}
    GET    /download/storage/v1/b/{bucket}/o/{object}?alt=media
    POST   /upload/storage/v1/b/{bucket}/o?uploadType=multipart|media|resumable
    PUT    /upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id=…   resumable chunks
    GET    /{bucket}/{object}?X-Goog-Algorithm=…&X-Goog-Signature=…            signed URL

The API wants a bearer token this server issued; the token endpoint verifies the
JWT against the service account's public key. A signed URL is verified in full
(the V4 canonical request rebuilt from the request, the RSA signature checked
against the signer's public key, the expiry enforced), so a tampered or expired
URL is refused (403 / 400, XML error like GCS's XML API).

Any request that arrives as a proxy request (CONNECT or an absolute URL) is
refused and recorded in `escapes`: tests point HTTP(S)_PROXY here so a client
that tries to leave 127.0.0.1 is caught instead of reaching the internet.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google_crc32c
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

PROJECT = "skytui-test"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    generation: int
    created: str

    def resource(self, bucket: str, name: str) -> dict[str, Any]:
        crc = base64.b64encode(google_crc32c.value(self.data).to_bytes(4, "big")).decode()
        return {
            "kind": "storage#object", "id": f"{bucket}/{name}/{self.generation}", "name": name, "bucket": bucket,
            "selfLink": f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}",
            "generation": str(self.generation), "metageneration": "1", "contentType": self.content_type,
            "size": str(len(self.data)), "md5Hash": base64.b64encode(hashlib.md5(self.data).digest()).decode(),
            "crc32c": crc, "etag": f"CL{self.generation}=", "storageClass": "STANDARD",
            "timeCreated": self.created, "updated": self.created,
        }


@dataclass
class _Resumable:
    bucket: str
    name: str
    content_type: str
    data: bytearray = field(default_factory=bytearray)


@dataclass
class ServiceAccount:
    email: str
    key_path: Path  # the service-account JSON (private key inside): what GOOGLE_APPLICATION_CREDENTIALS names


class GCSError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class FakeGCS:
    """The server's state; `endpoint` is http://127.0.0.1:PORT."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets: dict[str, dict[str, StoredObject]] = {}
        self.page_size = 1000  # GCS's default and maximum page of a listing; tests lower it to exercise paging
        self.calls: list[str] = []  # "POST upload/multipart", "GET list", "GET signed", …
        self.escapes: list[str] = []  # proxy requests: something tried to leave 127.0.0.1
        self.refused_signed: list[str] = []  # why signed GETs were refused
        self.created_buckets: list[tuple[str, str | None]] = []  # (name, location) of each bucket created through the API
        self._tokens: set[str] = set()
        self._keys: dict[str, rsa.RSAPublicKey] = {}  # service account email -> public key
        self._uploads: dict[str, _Resumable] = {}
        self._generation = 1_700_000_000_000_000
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-gcs", daemon=True)

    @property
    def endpoint(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    @property
    def token_uri(self) -> str:
        return f"{self.endpoint}/token"

    def start(self) -> FakeGCS:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------ for tests

    def reset(self) -> None:
        with self.lock:
            self.buckets.clear()
            self.calls.clear()
            self.escapes.clear()
            self.refused_signed.clear()
            self.created_buckets.clear()
            self._uploads.clear()
            self.page_size = 1000

    def create_bucket(self, name: str) -> None:
        with self.lock:
            self.buckets.setdefault(name, {})

    def put_object(self, bucket: str, name: str, data: bytes) -> None:
        with self.lock:
            self._store(bucket, name, data, "application/octet-stream")

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """The bucket's objects under `prefix`: {name: bytes}."""
        with self.lock:
            return {n: o.data for n, o in sorted(self.buckets.get(bucket, {}).items()) if n.startswith(prefix)}

    def service_account(self, directory: Path, name: str = "skytui-tests", known: bool = True) -> ServiceAccount:
        """A service-account key file with a fresh RSA key whose token_uri is this server
        (`known=False`: a key this server never issued, like a deleted one)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = f"{name}@{PROJECT}.iam.gserviceaccount.com"
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        info = {
            "type": "service_account", "project_id": PROJECT, "private_key_id": secrets.token_hex(20),
            "private_key": pem, "client_email": email, "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": f"{self.endpoint}/auth", "token_uri": self.token_uri,
            "universe_domain": "googleapis.com",
        }
        path = directory / f"{name}.json"
        path.write_text(json.dumps(info))
        path.chmod(0o600)
        if known:
            with self.lock:
                self._keys[email] = key.public_key()
        return ServiceAccount(email, path)

    # ------------------------------------------------------------ internals

    def _store(self, bucket: str, name: str, data: bytes, content_type: str) -> StoredObject:
        if bucket not in self.buckets:
            raise GCSError(404, "notFound", "The specified bucket does not exist.")
        self._generation += 1
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        stored = StoredObject(bytes(data), content_type, self._generation, now)
        self.buckets[bucket][name] = stored
        return stored

    def _bucket(self, bucket: str) -> dict[str, StoredObject]:
        if bucket not in self.buckets:
            raise GCSError(404, "notFound", "The specified bucket does not exist.")
        return self.buckets[bucket]

    def _object(self, bucket: str, name: str) -> StoredObject:
        found = self._bucket(bucket).get(name)
        if found is None:
            raise GCSError(404, "notFound", f"No such object: {bucket}/{name}")
        return found

    def issue_token(self, assertion: str) -> str:
        """Verify a service account's JWT grant (RS256, audience, expiry); a new access token."""
        try:
            head, body, sig = assertion.split(".")
            header = json.loads(_b64url(head))
            claims = json.loads(_b64url(body))
        except ValueError as exc:
            raise GCSError(400, "invalid_grant", "malformed JWT") from exc
        key = self._keys.get(str(claims.get("iss")))
        if header.get("alg") != "RS256" or key is None:
            raise GCSError(400, "invalid_grant", "unknown signer")
        try:
            key.verify(_b64url(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise GCSError(400, "invalid_grant", "Invalid JWT Signature.") from exc
        # google-auth always names Google's token endpoint as the audience, whatever token_uri says.
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE or float(claims.get("exp", 0)) < time.time():
            raise GCSError(400, "invalid_grant", "Invalid JWT: audience or expiry")
        token = "fake-token-" + secrets.token_urlsafe(24)
        self._tokens.add(token)
        return token

    def check_signed(self, method: str, raw_path: str, query: list[tuple[str, str]], host: str) -> None:
        """Verify a V4 signed URL as GCS does; GCSError when it is not valid."""
        params = dict(query)
        needed = ("X-Goog-Algorithm", "X-Goog-Credential", "X-Goog-Date", "X-Goog-Expires",
                  "X-Goog-SignedHeaders", "X-Goog-Signature")
        if any(name not in params for name in needed) or params["X-Goog-Algorithm"] != "GOOG4-RSA-SHA256":
            raise GCSError(400, "AuthorizationQueryParametersError", "missing or bad X-Goog-* parameters")
        email, _, scope = params["X-Goog-Credential"].partition("/")
        key = self._keys.get(email)
        if key is None:
            raise GCSError(403, "AccessDenied", "unknown signer")
        signed_at = datetime.strptime(params["X-Goog-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if signed_at.timestamp() + int(params["X-Goog-Expires"]) < time.time():
            raise GCSError(400, "ExpiredToken", "Invalid argument: the signed URL has expired.")
        headers = {"host": host}
        names = params["X-Goog-SignedHeaders"].split(";")
        canonical_query = "&".join(sorted(
            f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(v, safe='~')}"
            for k, v in query if k != "X-Goog-Signature"
        ))
        canonical_request = "\n".join([
            method, raw_path, canonical_query,
            "".join(f"{name}:{headers.get(name, '')}\n" for name in names),
            params["X-Goog-SignedHeaders"], "UNSIGNED-PAYLOAD",
        ])
        to_sign = "\n".join(["GOOG4-RSA-SHA256", params["X-Goog-Date"], scope,
                             hashlib.sha256(canonical_request.encode()).hexdigest()])
        try:
            key.verify(binascii.unhexlify(params["X-Goog-Signature"]), to_sign.encode(), padding.PKCS1v15(),
                       hashes.SHA256())
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise GCSError(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the signature you provided.") from exc

    def authorized(self, header: str | None) -> bool:
        return bool(header) and header is not None and header.startswith("Bearer ") and header[7:] in self._tokens

    def listing(self, bucket: str, query: dict[str, str]) -> dict[str, Any]:
        objects = self._bucket(bucket)
        prefix = query.get("prefix", "")
        names = sorted(n for n in objects if n.startswith(prefix))
        start = query.get("pageToken", "")
        if start:
            names = [n for n in names if n > _b64url(start).decode()]
        size = min(int(query.get("maxResults", self.page_size)), self.page_size)
        page = names[:size]
        result: dict[str, Any] = {"kind": "storage#objects",
                                  "items": [objects[n].resource(bucket, n) for n in page]}
        if len(names) > size:
            result["nextPageToken"] = base64.urlsafe_b64encode(page[-1].encode()).decode()
        return result


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _multipart(body: bytes, content_type: str) -> tuple[dict[str, Any], bytes, str]:
    """(metadata, data, data's content type) of a multipart/related upload."""
    boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
    parts = body.split(b"--" + boundary)[1:-1]
    decoded: list[tuple[str, bytes]] = []
    for part in parts:
        part = part[2:] if part.startswith(b"\r\n") else part
        head, _, payload = part.partition(b"\r\n\r\n")
        decoded.append((head.decode().lower(), payload[:-2] if payload.endswith(b"\r\n") else payload))
    (_, meta), (data_head, data) = decoded
    kind = data_head.split("content-type:", 1)[1].strip() if "content-type:" in data_head else "application/octet-stream"
    return json.loads(meta), data, kind


def _handler(fake: FakeGCS) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-gcs"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        # ------------------------------------------------------- plumbing

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return b"".join(self._chunks())
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _chunks(self) -> Iterator[bytes]:
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return
                yield self.rfile.read(size)
                self.rfile.readline()

        def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(data).encode(), headers=headers)

        def _error(self, exc: GCSError, xml: bool = False) -> None:
            if xml:
                body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{exc.reason}</Code>"
                        f"<Message>{exc.message}</Message></Error>").encode()
                self._send(exc.status, body, "application/xml; charset=UTF-8")
            elif self.path.startswith("/token"):
                self._json(exc.status, {"error": exc.reason, "error_description": exc.message})
            else:
                self._json(exc.status, {"error": {"code": exc.status, "message": exc.message, "errors": [
                    {"message": exc.message, "domain": "global", "reason": exc.reason}]}})

        def _media(self, obj: StoredObject) -> None:
            crc = base64.b64encode(google_crc32c.value(obj.data).to_bytes(4, "big")).decode()
            md5 = base64.b64encode(hashlib.md5(obj.data).digest()).decode()
            self._send(200, obj.data, obj.content_type, {
                "X-Goog-Hash": f"crc32c={crc},md5={md5}", "X-Goog-Generation": str(obj.generation),
                "X-Goog-Stored-Content-Length": str(len(obj.data)), "X-Goog-Stored-Content-Encoding": "identity",
            })

        # ------------------------------------------------------- routing

        def do_CONNECT(self) -> None:
            fake.escapes.append(f"CONNECT {self.path}")
            self._send(403, b"not leaving 127.0.0.1", "text/plain")

        def do_GET(self) -> None:
            self._route("GET")

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_DELETE(self) -> None:
            self._route("DELETE")

        def _route(self, method: str) -> None:
            body = self._body()
            if "://" in self.path.split("?", 1)[0]:
                fake.escapes.append(f"{method} {self.path.split('?', 1)[0]}")
                self._send(403, b"not leaving 127.0.0.1", "text/plain")
                return
            raw_path, _, raw_query = self.path.partition("?")
            query_list = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
            query = dict(query_list)
            signed = "X-Goog-Signature" in query or "X-Goog-Algorithm" in query  # the XML API's signed form
            try:
                with fake.lock:
                    if raw_path == "/token" and method == "POST":
                        self._token(body)
                    elif signed:
                        self._signed_get(method, raw_path, query_list)
                    elif not fake.authorized(self.headers.get("Authorization")):
                        raise GCSError(401, "required", "Anonymous caller does not have storage access.")
                    else:
                        self._api(method, raw_path, query, body)
            except GCSError as exc:
                if signed:
                    fake.refused_signed.append(exc.reason)
                self._error(exc, xml=signed)

        def _token(self, body: bytes) -> None:
            form = dict(urllib.parse.parse_qsl(body.decode()))
            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
                raise GCSError(400, "unsupported_grant_type", "only service-account JWT grants")
            token = fake.issue_token(form.get("assertion", ""))
            fake.calls.append("POST token")
            self._json(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

        def _signed_get(self, method: str, raw_path: str, query: list[tuple[str, str]]) -> None:
            if method not in ("GET", "HEAD"):
                raise GCSError(403, "SignatureDoesNotMatch", "signed for GET")
            fake.check_signed(method, raw_path, query, self.headers.get("Host", ""))
            bucket, _, name = raw_path.lstrip("/").partition("/")
            fake.calls.append("GET signed")
            try:
                self._media(fake._object(urllib.parse.unquote(bucket), urllib.parse.unquote(name)))
            except GCSError as exc:
                raise GCSError(404, "NoSuchKey", "The specified key does not exist.") if exc.status == 404 else exc

        def _api(self, method: str, raw_path: str, query: dict[str, str], body: bytes) -> None:
            parts = raw_path.lstrip("/").split("/")
            if parts[:3] == ["upload", "storage", "v1"] and parts[3:4] == ["b"] and parts[5:6] == ["o"]:
                self._upload(method, urllib.parse.unquote(parts[4]), query, body)
                return
            download = parts[:1] == ["download"]
            if download:
                parts = parts[1:]
            if parts == ["storage", "v1", "b"] and method == "POST":
                self._insert_bucket(query, body)
                return
            if parts[:3] != ["storage", "v1", "b"] or len(parts) < 4:
                raise GCSError(404, "notFound", f"no route {method} {raw_path}")
            bucket = urllib.parse.unquote(parts[3])
            if len(parts) == 4 and method == "DELETE":
                if fake._bucket(bucket):
                    raise GCSError(409, "conflict", "The bucket you tried to delete is not empty.")
                del fake.buckets[bucket]
                fake.calls.append("DELETE bucket")
                self._send(204)
            elif len(parts) == 4 and method == "GET":
                fake._bucket(bucket)
                fake.calls.append("GET bucket")
                self._json(200, {"kind": "storage#bucket", "id": bucket, "name": bucket, "location": "US",
                                 "storageClass": "STANDARD", "metageneration": "1", "projectNumber": "123456"})
            elif len(parts) == 5 and parts[4] == "o" and method == "GET":
                fake.calls.append("GET list")
                self._json(200, fake.listing(bucket, query))
            elif len(parts) >= 6 and parts[4] == "o":
                name = urllib.parse.unquote("/".join(parts[5:]))
                obj = fake._object(bucket, name)
                if method == "DELETE":
                    del fake.buckets[bucket][name]
                    fake.calls.append("DELETE object")
                    self._send(204)
                elif method in ("GET", "HEAD") and (download or query.get("alt") == "media"):
                    fake.calls.append("GET media")
                    self._media(obj)
                elif method == "GET":
                    fake.calls.append("GET object")
                    self._json(200, obj.resource(bucket, name))
                else:
                    raise GCSError(405, "methodNotAllowed", f"{method} on an object")
            else:
                raise GCSError(404, "notFound", f"no route {method} {raw_path}")

        def _insert_bucket(self, query: dict[str, str], body: bytes) -> None:
            meta = json.loads(body or b"{}")
            name = str(meta.get("name", ""))
            if not query.get("project"):
                raise GCSError(400, "required", "Required parameter: project")
            if not _BUCKET_NAME.match(name):
                raise GCSError(400, "invalid", "Invalid bucket name: " + repr(name))
            if name in fake.buckets:
                raise GCSError(409, "conflict", "Your previous request to create the named bucket succeeded "
                                                "and you already own it.")
            fake.buckets[name] = {}
            fake.created_buckets.append((name, meta.get("location")))
            fake.calls.append("POST bucket")
            self._json(200, {"kind": "storage#bucket", "id": name, "name": name,
                             "location": str(meta.get("location") or "US").upper(), "storageClass": "STANDARD",
                             "metageneration": "1", "projectNumber": "123456"})

        def _upload(self, method: str, bucket: str, query: dict[str, str], body: bytes) -> None:
            kind = query.get("uploadType", "")
            fake._bucket(bucket)
            if method == "POST" and kind == "multipart":
                meta, data, content_type = _multipart(body, self.headers.get("Content-Type", ""))
                name = meta.get("name") or query.get("name", "")
                stored = fake._store(bucket, name, data, meta.get("contentType") or content_type)
                fake.calls.append("POST upload/multipart")
                self._json(200, stored.resource(bucket, name))
            elif method == "POST" and kind == "media":
                name = query.get("name", "")
                stored = fake._store(bucket, name, body, self.headers.get("Content-Type", "application/octet-stream"))
                fake.calls.append("POST upload/media")
                self._json(200, stored.resource(bucket, name))
            elif method == "POST" and kind == "resumable":
                meta = json.loads(body or b"{}")
                upload_id = secrets.token_urlsafe(16)
                content_type = self.headers.get("X-Upload-Content-Type") or meta.get("contentType") or ""
                fake._uploads[upload_id] = _Resumable(bucket, meta.get("name") or query.get("name", ""),
                                                      content_type or "application/octet-stream")
                fake.calls.append("POST upload/resumable")
                location = (f"{fake.endpoint}/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o"
                            f"?uploadType=resumable&upload_id={upload_id}")
                self._send(200, b"", "text/plain", {"Location": location})
            elif method == "PUT" and kind == "resumable":
                self._chunk(query.get("upload_id", ""), body)
            else:
                raise GCSError(400, "invalid", f"upload {method} uploadType={kind!r}")

        def _chunk(self, upload_id: str, body: bytes) -> None:
            session = fake._uploads.get(upload_id)
            if session is None:
                raise GCSError(404, "notFound", "no such upload session")
            # Content-Range: "bytes a-b/total", "bytes a-b/*", or "bytes */total" (a status query).
            spec = self.headers.get("Content-Range", "").removeprefix("bytes ").strip()
            span, _, total = spec.partition("/")
            if span != "*":
                start = int(span.split("-")[0])
                if start != len(session.data):
                    raise GCSError(400, "invalid", f"chunk starts at {start}, have {len(session.data)}")
                session.data.extend(body)
            fake.calls.append("PUT upload/resumable")
            if total != "*" and len(session.data) >= int(total):
                del fake._uploads[upload_id]
                stored = fake._store(session.bucket, session.name, bytes(session.data), session.content_type)
                self._json(200, stored.resource(session.bucket, session.name))
                return
            headers = {"Range": f"bytes=0-{len(session.data) - 1}"} if session.data else {}
            self._send(308, b"", "text/plain", headers)

    return Handler


def start_fake_gcs() -> FakeGCS:
    return FakeGCS().start()
