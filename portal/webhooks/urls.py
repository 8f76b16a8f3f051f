"""Where a webhook may go, and the request that goes there.

An endpoint's URL is checked when it is saved and again at every delivery: its host is
resolved, every address must be public (not loopback, private, link-local, carrier-grade NAT,
multicast, reserved or a cloud metadata address) unless allow-listed
(``WEBHOOK_ALLOWED_HOSTS``), and the request then connects to the very address that was
checked, so a DNS answer that changes between the check and the connection (rebinding)
cannot redirect it. TLS is still verified against the URL's host name. Redirects are not
followed: a 3xx is a failed attempt."""

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.exceptions import HTTPError

from portal.errors import ValidationFailed

EXCERPT_BYTES = 2048


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    host_header: str


@dataclass
class Outcome:
    status_code: int | None
    latency_ms: int
    excerpt: str
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def parse(url: str, require_https: bool) -> Target:
    """The URL's parts, or a message saying what is wrong with it."""
    url = (url or "").strip()
    if not url:
        raise ValidationFailed("Enter the URL that should receive the events.", field="url")
    if len(url) > 2048:
        raise ValidationFailed("Keep the URL under 2,048 characters.", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationFailed("This is not a valid URL.", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(
            "Enter a full URL starting with https://, e.g. https://example.com/webhooks.", field="url"
        )
    if parts.scheme == "http" and require_https:
        raise ValidationFailed("Use an https:// URL: events are only sent over TLS.", field="url")
    if parts.username or parts.password:
        raise ValidationFailed(
            "Leave user names and passwords out of the URL; verify the signature instead.", field="url"
        )
    if any(ord(char) < 33 for char in url):
        raise ValidationFailed("The URL may not contain spaces or control characters.", field="url")
    host = parts.hostname.lower()
    default_port = 443 if parts.scheme == "https" else 80
    port = port or default_port
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    bracketed = f"[{host}]" if ":" in host else host
    host_header = bracketed if port == default_port else f"{bracketed}:{port}"
    return Target(parts.scheme, host, port, path, host_header)


def _allow_list(setting: str) -> tuple[set[str], list]:
    names, networks = set(), []
    for item in (part.strip().lower() for part in setting.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            names.add(item)
    return names, networks


def _is_public(address) -> bool:
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve(target: Target, allowed_hosts: str) -> str:
    """The address to connect to, after checking every address the host resolves to."""
    names, networks = _allow_list(allowed_hosts)
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ValidationFailed(f"We could not find the host {target.host}. Check the URL.", field="url") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    host_allowed = target.host in names
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if not (host_allowed or _is_public(address) or any(address in network for network in networks)):
            raise ValidationFailed(
                f"{target.host} resolves to {text}, a private or reserved address: webhooks only go to "
                "addresses reachable from the internet.",
                field="url",
            )
    return addresses[0]


def check(url: str, config) -> Target:
    """The checks made when an endpoint is saved (and, with ``resolve``, at every delivery)."""
    target = parse(url, config["WEBHOOK_REQUIRE_HTTPS"])
    resolve(target, config["WEBHOOK_ALLOWED_HOSTS"])
    return target


def post(url: str, body: bytes, headers: dict, config) -> Outcome:
    """POST ``body`` to ``url`` once, pinned to the address that passed the checks."""
    started = time.perf_counter()

    def outcome(status=None, excerpt="", error=None) -> Outcome:
        return Outcome(status, round((time.perf_counter() - started) * 1000), excerpt, error)

    try:
        target = parse(url, config["WEBHOOK_REQUIRE_HTTPS"])
        address = resolve(target, config["WEBHOOK_ALLOWED_HOSTS"])
    except ValidationFailed as refused:
        return outcome(error=f"Not sent: {refused.message}")
    timeout = Timeout(total=config["WEBHOOK_TIMEOUT_SECONDS"])
    if target.scheme == "https":
        pool = HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    else:
        pool = HTTPConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1)
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": target.host_header},
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            excerpt = response.read(EXCERPT_BYTES, decode_content=True).decode("utf-8", "replace")
        finally:
            response.release_conn()
        return outcome(response.status, excerpt)
    except HTTPError as error:
        reason = getattr(error, "reason", None) or error
        return outcome(error=f"{type(reason).__name__}: {reason}"[:500])
    except OSError as error:
        return outcome(error=f"{type(error).__name__}: {error}"[:500])
    finally:
        pool.close()
