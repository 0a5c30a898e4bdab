"""The HTTP session the alpaca-py clients send through: every request bounded by a timeout, never retried by the
transport, and sent over urllib3's connection pool directly.

alpaca-py calls ``session.request(method, url, headers=…, params=… | json=…, allow_redirects=False)`` and reads
``raise_for_status()``, ``text`` and ``json()`` of the answer. ``requests`` spends about two milliseconds of
Python per call around its socket work (environment proxies, hooks, adapters, cookie jars) — more than the
round trip to a nearby endpoint. This session keeps the SDK's contract (a real ``requests.Response`` back, the
``requests`` exceptions on failure) and skips that machinery; when the environment names a proxy for the
endpoint, it sends through ``requests`` as before.
"""

from __future__ import annotations

import json as jsonlib
import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ProtocolError, ReadTimeoutError


class FastSession(requests.Session):
    """A session whose every request has a timeout, whose transport never retries, and which sends through a
    urllib3 pool per origin unless a proxy is configured for it."""

    def __init__(self, timeout: float, pool_size: int, base_url: str) -> None:
        super().__init__()
        self.timeout = timeout
        self._pool_size = pool_size
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self._proxied = bool(requests.utils.get_environ_proxies(base_url))
        self._ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
        self._pools: dict[str, urllib3.HTTPConnectionPool] = {}

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        known = {"params", "json", "headers", "allow_redirects", "timeout", "data"}
        if self._proxied or args or set(kwargs) - known or kwargs.get("data") is not None:
            return super().request(method, url, *args, **kwargs)
        return self._send(
            str(method).upper(),
            str(url),
            params=kwargs.get("params"),
            body=kwargs.get("json"),
            headers=kwargs.get("headers") or {},
            timeout=float(kwargs["timeout"]),
        )

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        super().close()

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        body: Any,
        headers: Mapping[str, str],
        timeout: float,
    ) -> requests.Response:
        parts = urlsplit(url)
        target = parts.path or "/"
        query = "&".join(q for q in (parts.query, encode_params(params)) if q)
        if query:
            target += "?" + query
        sent = {"Accept": "*/*", "Accept-Encoding": "identity", "Connection": "keep-alive", **headers}
        payload = None
        if body is not None:
            payload = jsonlib.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        pool = self._pool(parts.scheme, parts.netloc)
        try:
            raw = pool.urlopen(
                method,
                target,
                body=payload,
                headers=sent,
                retries=False,
                redirect=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                preload_content=True,
            )
        except ConnectTimeoutError as exc:
            raise requests.exceptions.ConnectTimeout(str(exc)) from exc
        except ReadTimeoutError as exc:
            raise requests.exceptions.ReadTimeout(str(exc)) from exc
        except (NewConnectionError, ProtocolError, ConnectionError) as exc:
            raise requests.exceptions.ConnectionError(str(exc)) from exc
        except HTTPError as exc:
            raise requests.exceptions.RequestException(str(exc)) from exc
        response = requests.Response()
        response.status_code = raw.status
        response.reason = raw.reason or ""
        response.headers = CaseInsensitiveDict(raw.headers)
        response._content = raw.data
        response.encoding = requests.utils.get_encoding_from_headers(response.headers) or "utf-8"
        response.url = url
        return response

    def _pool(self, scheme: str, netloc: str) -> urllib3.HTTPConnectionPool:
        key = f"{scheme}://{netloc}"
        pool = self._pools.get(key)
        if pool is None:
            extra = {"cert_reqs": "CERT_REQUIRED", "ca_certs": self._ca} if scheme == "https" else {}
            found = urllib3.connection_from_url(key, maxsize=self._pool_size, block=False, **extra)
            assert isinstance(found, urllib3.HTTPConnectionPool)
            pool = self._pools[key] = found
        return pool


def encode_params(params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> str:
    """Query parameters as ``requests`` encodes them: None dropped, sequences repeated, strings (string enums
    included: their value) as UTF-8, anything else as ``str()``."""
    if not params:
        return ""
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[bytes, bytes]] = []
    for key, value in items:
        values = value if isinstance(value, list | tuple) else [value]
        pairs += [(_bytes(key), _bytes(v)) for v in values if v is not None]
    return urlencode(pairs)


def _bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else str(value).encode("utf-8")
