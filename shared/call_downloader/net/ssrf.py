"""The address guard: decides whether a URL may be fetched, and pins the addresses to connect to.

`check_url` parses a URL strictly, normalises the host, resolves it once and judges EVERY address
against a `Policy`. The caller must connect to `Target.addresses` (never re-resolve the name), so
a DNS answer that changes between the check and the connection (DNS rebinding) cannot move the
request to an address that was not checked.

Two policies (SPEC 3.1, 3.4):

- `Policy.public_only(allowlist)` — `audio_url` downloads and destinations made through the
  API: only globally routable unicast addresses, unless the host name, the address or a CIDR
  range holding it is on the allowlist (`AUDIO_URL_ALLOWLIST`, `DESTINATION_URL_ALLOWLIST`),
  with the URL's port: an entry may name its port (`pbx.corp:8443`, `[fd00::5]:8080`,
  `10.0.0.0/8:8080`) or any port (`pbx.corp:*`), and without one stands for 80 and 443. An
  allowlisted target is judged like the configured destination: internal addresses become
  fine, but link-local, cloud metadata, unspecified, multicast, broadcast and reserved
  addresses stay refused whatever the allowlist says.
- `Policy.destination()` — the destination of the configuration (`DELIVERY_URL`), trusted:
  internal addresses (private, loopback, CGNAT, unique-local) are allowed; link-local, cloud
  metadata, unspecified, multicast, broadcast and reserved addresses are not.

Above both, `EGRESS_ALLOWLIST` (`Egress`), when set, confines every outbound connection of the
product (downloads, the AI, webhooks, destination tests) to the host names, addresses and CIDR
ranges it lists: `check_url` refuses anything else before resolving it, and the HTTP clients of
`net.transport` refuse it again before connecting.

Numeric host spellings that libc's `inet_aton` (and so `getaddrinfo`) accepts — `127.1`,
`2130706433`, `0x7f000001`, `0177.0.0.1`, `0x7f.0.0.1` — are normalised the same way (the WHATWG
URL standard's IPv4 parser, which mirrors `inet_aton`) and the resulting address is checked and
used; a host that ends in a number but is not a valid such spelling is refused. IPv6 addresses
that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16,
Teredo 2001::/32) are judged by the embedded address as well.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
Ports = frozenset[int] | None  # the ports an allowlist entry opens; None: any

MAX_URL_LENGTH = 4096
DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_ALLOWLIST_PORTS = frozenset(DEFAULT_PORTS.values())

# Address categories. Those in ALWAYS_FORBIDDEN are refused by every policy, allowlist or not.
LOOPBACK = "loopback"
PRIVATE = "private"
LINK_LOCAL = "link-local"
METADATA = "cloud metadata"
UNSPECIFIED = "unspecified"
MULTICAST = "multicast"
BROADCAST = "broadcast"
RESERVED = "reserved"
ALWAYS_FORBIDDEN = frozenset({LINK_LOCAL, METADATA, UNSPECIFIED, MULTICAST, BROADCAST, RESERVED})

# Instance-metadata endpoints of the common clouds. Several are not link-local (Azure's
# wireserver is a public address, Alibaba's sits in CGNAT space), hence the explicit list.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "168.63.129.16",  # Azure wireserver
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "fd00:ec2::254",  # AWS IPv6 IMDS
    )
)
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
_METADATA_SUFFIXES = (".metadata.google.internal",)


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), category) for net, category in pairs)


# First match wins, so narrower ranges come first. Python's `is_global`/`is_private` differ
# between patch releases (and call 224.0.0.1 or ::127.0.0.1 "global"), hence our own table.
_V4_TABLE = _nets(
    ("0.0.0.0/32", UNSPECIFIED),
    ("0.0.0.0/8", RESERVED),  # "this network"
    ("127.0.0.0/8", LOOPBACK),
    ("10.0.0.0/8", PRIVATE),
    ("172.16.0.0/12", PRIVATE),
    ("192.168.0.0/16", PRIVATE),
    ("100.64.0.0/10", PRIVATE),  # carrier-grade NAT, shared address space
    ("169.254.0.0/16", LINK_LOCAL),
    ("192.0.0.0/24", RESERVED),  # IETF protocol assignments
    ("192.0.2.0/24", RESERVED),  # documentation
    ("198.51.100.0/24", RESERVED),
    ("203.0.113.0/24", RESERVED),
    ("198.18.0.0/15", RESERVED),  # benchmarking
    ("192.88.99.0/24", RESERVED),  # deprecated 6to4 relay anycast
    ("224.0.0.0/4", MULTICAST),
    ("255.255.255.255/32", BROADCAST),
    ("240.0.0.0/4", RESERVED),
)
_V6_TABLE = _nets(
    ("::/128", UNSPECIFIED),
    ("::1/128", LOOPBACK),
    ("64:ff9b:1::/48", PRIVATE),  # local-use NAT64
    ("100::/64", RESERVED),  # discard-only
    ("2001:db8::/32", RESERVED),  # documentation
    ("3fff::/20", RESERVED),  # documentation
    ("2001::/23", RESERVED),  # IETF protocol assignments (Teredo, ORCHID, benchmarking...)
    ("fc00::/7", PRIVATE),  # unique local
    ("fe80::/10", LINK_LOCAL),
    ("fec0::/10", RESERVED),  # deprecated site-local
    ("ff00::/8", MULTICAST),
)
_LOOPBACKS = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
_V6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


class TargetError(Exception):
    """A URL that cannot be fetched. `.reason` is short and safe to show to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ForbiddenTarget(TargetError):
    """The URL is malformed or points somewhere the policy does not allow."""


class UnresolvableTarget(TargetError):
    """The host name did not resolve (a fault of the URL or of DNS, not of the policy)."""


@dataclass
class Target:
    scheme: str
    host: str  # normalised: lower-case ASCII (IDNA), no trailing dot, no brackets
    port: int
    path_and_query: str
    addresses: list[IPAddress] = field(default_factory=list)

    @property
    def host_header(self) -> str:
        """The `Host` header for the original name (with the port when it is not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != DEFAULT_PORTS[self.scheme]:
            host = f"{host}:{self.port}"
        return host

    def url_for(self, address: IPAddress) -> str:
        """The URL that reaches `address` directly (the pinned connection)."""
        literal = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{literal}:{self.port}{self.path_and_query}"

    @property
    def display_url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path_and_query}"


def categorize(address: IPAddress) -> str | None:
    """The special-purpose category of `address`, or None for a globally routable unicast one."""
    if address in _METADATA_ADDRESSES:
        return METADATA
    if isinstance(address, ipaddress.IPv6Address):
        return _categorize_v6(address)
    for network, category in _V4_TABLE:
        if address in network:
            return category
    # Anything Python considers non-global that the table missed is not a place to fetch from.
    return None if address.is_global else RESERVED


def _categorize_v6(address: ipaddress.IPv6Address) -> str | None:
    if address.scope_id:
        address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        if address in _METADATA_ADDRESSES:
            return METADATA
    embedded = embedded_ipv4(address)
    if embedded:
        worst = next((c for c in (categorize(v4) for v4 in embedded) if c), None)
        if worst:
            return worst
        # A public IPv4 address behind an IPv4-mapped or NAT64 prefix is reached as that
        # address (dual-stack sockets, DNS64 networks); other embeddings are not real routes.
        if address.ipv4_mapped is not None or address in _NAT64:
            return None
        if address in _SIX_TO_FOUR:
            return None
        return RESERVED
    for network, category in _V6_TABLE:
        if address in network:
            return category
    return None if address in _V6_GLOBAL_UNICAST else RESERVED


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses carried inside `address` (mapped, compatible, NAT64, 6to4, Teredo)."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64:
        return [low32]
    if address in _V4_COMPATIBLE and int(address) > 1:  # not :: and ::1 themselves
        return [low32]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        server, client = address.teredo
        return [client, server]
    return []


class Policy:
    """Which addresses a URL may reach. Build with `public_only(...)` or `destination()`."""

    def __init__(
        self,
        *,
        name: str,
        internal_allowed: bool,
        allow_loopback: bool = True,
        allowlist: Sequence[str] = (),
        setting: str = "AUDIO_URL_ALLOWLIST",
        default_ports: Ports = DEFAULT_ALLOWLIST_PORTS,
    ) -> None:
        self.name = name
        self._default_ports = default_ports
        self.internal_allowed = internal_allowed
        self.allow_loopback = allow_loopback
        # Each entry with the ports it opens (None: any).
        self.allowed_hosts: list[tuple[str, Ports]] = []
        self.allowed_suffixes: list[tuple[str, Ports]] = []
        self.allowed_networks: list[tuple[IPNetwork, Ports]] = []
        for raw in allowlist:
            self._add_allowlist_entry(raw, setting)

    @classmethod
    def public_only(
        cls, allowlist: Sequence[str] = (), *, setting: str = "AUDIO_URL_ALLOWLIST"
    ) -> Policy:
        """Public unicast only, plus whatever `allowlist` names (`setting` is where it comes
        from, for the error message).

        Entries are host names (`pbx.corp`, or `*.corp` for every name under `corp`), addresses
        (`10.0.0.5`, `fd00::5`) or CIDR ranges (`10.20.0.0/16`), each optionally with a port
        (`pbx.corp:8443`, `[fd00::5]:8443`, `10.20.0.0/16:8080`) or `:*` for any port; without
        one, ports 80 and 443.
        A bad entry raises ValueError.
        """
        return cls(name="public_only", internal_allowed=False, allowlist=allowlist, setting=setting)

    @classmethod
    def destination(cls, *, allow_loopback: bool = True) -> Policy:
        """The configured destination: internal addresses allowed, never link-local or
        metadata."""
        return cls(name="destination", internal_allowed=True, allow_loopback=allow_loopback)

    def __repr__(self) -> str:
        return f"Policy({self.name})"

    def _add_allowlist_entry(self, raw: str, setting: str) -> None:
        entry = str(raw).strip().lower()
        if not entry:
            return
        try:
            entry, ports = _split_entry_port(entry, self._default_ports)
        except ValueError:
            raise ValueError(f"{setting} entry {raw!r} has an invalid port") from None
        try:
            network = ipaddress.ip_network(entry.strip("[]"), strict=False)
            self.allowed_networks.append((network, ports))
            return
        except ValueError:
            pass
        wildcard = entry.startswith("*.")
        try:
            name = _normalise_name(entry[2:] if wildcard else entry)
        except ForbiddenTarget:
            raise ValueError(
                f"{setting} entry {raw!r} is not a host name, address or CIDR range"
            ) from None
        literal = _literal_address(name)
        if literal is not None:
            # e.g. `127.1`: accept the spelling libc would, as its canonical address.
            self.allowed_networks.append((ipaddress.ip_network(literal), ports))
        elif wildcard:
            self.allowed_suffixes.append(("." + name, ports))
        else:
            self.allowed_hosts.append((name, ports))

    def host_allowlisted(self, host: str, port: int) -> bool:
        return any(host == h and _opens(p, port) for h, p in self.allowed_hosts) or any(
            host.endswith(s) and _opens(p, port) for s, p in self.allowed_suffixes
        )

    def address_allowlisted(self, address: IPAddress, port: int) -> bool:
        forms: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            forms.append(address.ipv4_mapped)
        return any(
            form.version == net.version and form in net and _opens(ports, port)
            for form in forms
            for net, ports in self.allowed_networks
        )

    def allowlisted(self, target: Target) -> bool:
        """Is `target` (checked: its addresses resolved) reached through the allowlist?"""
        return self.host_allowlisted(target.host, target.port) or bool(
            target.addresses
            and all(self.address_allowlisted(a, target.port) for a in target.addresses)
        )

    def refusal(self, host: str, address: IPAddress, port: int) -> str | None:
        """Why `address` (resolved from `host`) may not be reached on `port`, or None when it
        may."""
        category = categorize(address)
        if category is None:
            return None
        if category in ALWAYS_FORBIDDEN:
            return f"{category} addresses are not allowed"
        if self.internal_allowed:
            if category == LOOPBACK and not self.allow_loopback:
                return f"{category} addresses are not allowed"
            return None
        if self.host_allowlisted(host, port) or self.address_allowlisted(address, port):
            return None
        return f"{category} addresses are not allowed"


class Egress:
    """`EGRESS_ALLOWLIST`: the only places outbound connections may go, whatever a policy says.

    Entries are host names (`ai.corp`, `*.corp`), addresses or CIDR ranges (`127.0.0.0/8`),
    each open on every port unless it names one (`ai.corp:443`). A host name passes when it
    is listed; an address (a literal in the URL, or the address a
    listed name was pinned to) when a listed range holds it. A name that is not listed is
    refused as it is, never resolved to be judged: a locked-down deployment names what it talks
    to, and refusing needs no DNS query."""

    def __init__(self, entries: Sequence[str]) -> None:
        try:
            self._list = Policy(
                name="egress",
                internal_allowed=False,
                allowlist=entries,
                setting="EGRESS_ALLOWLIST",
                default_ports=None,
            )
        except ValueError:
            bad = next(e for e in entries if not _valid_entry(e))
            raise ValueError(
                f"EGRESS_ALLOWLIST entry {bad!r} is not a host name, address or CIDR range"
            ) from None

    def refusal(self, host: str, port: int, pinned_name: str | None = None) -> str | None:
        """Why a connection to `host` (a normalised name or address) on `port` may not be
        made, or None. `pinned_name`: the name `host` was resolved from by `check_url`."""
        address = _literal_address(host)
        if address is None:
            allowed = self._list.host_allowlisted(host, port)
        else:
            allowed = self._list.address_allowlisted(address, port) or (
                pinned_name is not None and self._list.host_allowlisted(pinned_name, port)
            )
        return None if allowed else "the host is not in EGRESS_ALLOWLIST"


def _valid_entry(raw: str) -> bool:
    try:
        Policy(name="check", internal_allowed=False, allowlist=[raw], default_ports=None)
    except ValueError:
        return False
    return True


_egress_cache: tuple[tuple[str, ...], Egress | None] = ((), None)


def egress() -> Egress | None:
    """The configured `EGRESS_ALLOWLIST`, or None when it is not set (no limit)."""
    global _egress_cache
    from call_downloader.config import get_settings

    entries = get_settings().egress_allowlist
    cached_entries, cached = _egress_cache
    if entries != cached_entries or (entries and cached is None):
        cached = Egress(entries) if entries else None
        _egress_cache = (entries, cached)
    return cached


def egress_refusal(host: str, port: int, pinned_name: str | None = None) -> str | None:
    """Why `EGRESS_ALLOWLIST` refuses a connection to `host` on `port`, or None (allowed, or
    not set)."""
    limit = egress()
    return limit.refusal(host, port, pinned_name) if limit is not None else None
def _split_entry_port(entry: str, default: Ports) -> tuple[str, Ports]:
    """An allowlist entry and the ports it opens: `default` unless it names one, or `*`."""
    host, port = entry, None
    if entry.startswith("["):
        end = entry.find("]")
        if end > 0 and entry[end + 1 :].startswith(":"):
            host, port = entry[: end + 1], entry[end + 2 :]
    elif entry.count(":") == 1:  # more than one: an IPv6 address, which takes no port here
        host, port = entry.split(":")
    if port is None:
        return host, default
    if port == "*":
        return host, None
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(port)
    return host, frozenset({int(port)})


def _opens(ports: Ports, port: int) -> bool:
    return ports is None or port in ports


def check_url(url: str, *, policy: Policy, resolver: Resolver | None = None) -> Target:
    """Parse, normalise, resolve and judge `url`; return the target pinned to checked addresses.

    Raises ForbiddenTarget (malformed URL, refused host or address) or UnresolvableTarget.
    `resolver(host, port)` returns address strings; the default uses `socket.getaddrinfo`.
    A host outside `EGRESS_ALLOWLIST` is refused before anything else, unresolved.
    """
    target = parse_url(url)
    outside = egress_refusal(target.host, target.port)
    if outside:
        raise ForbiddenTarget(outside)
    if _is_metadata_name(target.host):
        raise ForbiddenTarget("cloud metadata hosts are not allowed")

    literal = _literal_address(target.host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
        target.host = str(literal)  # canonical spelling, e.g. 127.1 -> 127.0.0.1
    else:
        if _is_localhost_name(target.host) and all(
            policy.refusal(target.host, loopback, target.port) for loopback in _LOOPBACKS
        ):
            # Refused by name whatever a resolver would answer for it (RFC 6761).
            raise ForbiddenTarget("loopback addresses are not allowed")
        addresses = _resolve(target.host, target.port, resolver)

    for address in addresses:
        why = policy.refusal(target.host, address, target.port)
        if why:
            raise ForbiddenTarget(why)
    target.addresses = addresses
    return target


def parse_url(url: str) -> Target:
    """Strict syntax check and normalisation; no resolution, no policy."""
    if not isinstance(url, str) or not url:
        raise ForbiddenTarget("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise ForbiddenTarget(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if "\\" in url:
        raise ForbiddenTarget("the URL contains a backslash")
    if any(unicodedata.category(ch)[0] in "CZ" for ch in url):
        raise ForbiddenTarget("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ForbiddenTarget("the URL is malformed") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ForbiddenTarget("only http and https URLs are allowed")
    netloc = parts.netloc
    if not netloc:
        raise ForbiddenTarget("the URL has no host")
    if "@" in netloc:
        raise ForbiddenTarget("URLs with user information are not allowed")

    host, port_text = _split_netloc(netloc)
    port = DEFAULT_PORTS[scheme]
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
            raise ForbiddenTarget("the URL has an invalid port")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ForbiddenTarget("the URL has an invalid port")

    if host.startswith("["):
        host = _normalise_ipv6_literal(host)
    else:
        host = _normalise_name(host)

    path = _encode_component(parts.path or "/", safe="/%!$&'()*+,;=:@-._~")
    if not path.startswith("/"):
        raise ForbiddenTarget("the URL is malformed")
    query = _encode_component(parts.query, safe="/?%!$&'()*+,;=:@-._~")
    path_and_query = path + (f"?{query}" if query else "")
    return Target(scheme=scheme, host=host, port=port, path_and_query=path_and_query)


def _split_netloc(netloc: str) -> tuple[str, str | None]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise ForbiddenTarget("the URL has a malformed IPv6 address")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ForbiddenTarget("the URL is malformed")
        return host, rest[1:]
    if netloc.count(":") > 1:
        raise ForbiddenTarget("the URL is malformed")
    if ":" in netloc:
        host, port = netloc.split(":", 1)
        return host, port
    return netloc, None


def _normalise_ipv6_literal(host: str) -> str:
    inner = host[1:-1]
    if "%" in inner:
        raise ForbiddenTarget("IPv6 zone identifiers are not allowed")
    try:
        return str(ipaddress.IPv6Address(inner))
    except ValueError:
        raise ForbiddenTarget("the URL has a malformed IPv6 address") from None


_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def _normalise_name(host: str) -> str:
    """Lower-case ASCII host (IDNA/UTS 46 for non-ASCII), trailing dot removed, checked."""
    if not host:
        raise ForbiddenTarget("the URL has no host")
    if not host.isascii():
        try:
            # UTS 46 mapping also folds full-width digits and dots ("１２７．０．０．１").
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            raise ForbiddenTarget("the URL has an invalid host name") from None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        raise ForbiddenTarget("the URL has an invalid host name")
    labels = host.split(".")
    if _ends_in_number(labels):
        address = _parse_ipv4_number(labels)
        if address is None:
            raise ForbiddenTarget("the URL has an invalid IPv4 address")
        return str(address)
    if not all(_LABEL.match(label) for label in labels):
        raise ForbiddenTarget("the URL has an invalid host name")
    return host


def _ends_in_number(labels: list[str]) -> bool:
    last = labels[-1]
    if last.isdigit():
        return True
    return last.startswith("0x") and all(c in "0123456789abcdef" for c in last[2:])


def _parse_ipv4_number(labels: list[str]) -> ipaddress.IPv4Address | None:
    """The WHATWG IPv4 parser (libc `inet_aton` semantics): 1-4 parts, decimal, 0x-hex or
    0-octal, the last part filling the remaining bytes."""
    if not 1 <= len(labels) <= 4:
        return None
    numbers: list[int] = []
    for label in labels:
        try:
            if label.startswith("0x"):
                if len(label) == 2:
                    return None
                numbers.append(int(label[2:], 16))
            elif len(label) > 1 and label.startswith("0"):
                numbers.append(int(label[1:], 8))
            elif label.isdigit():
                numbers.append(int(label))
            else:
                return None
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_metadata_name(host: str) -> bool:
    return host in _METADATA_NAMES or host.endswith(_METADATA_SUFFIXES)


def _is_localhost_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")  # RFC 6761


def _encode_component(text: str, *, safe: str) -> str:
    # Non-ASCII and unsafe characters are percent-encoded; existing %XX escapes are kept.
    return quote(text, safe=safe)


def _resolve(host: str, port: int, resolver: Resolver | None) -> list[IPAddress]:
    try:
        raw = (resolver or default_resolver)(host, port)
    except (OSError, UnicodeError):
        raise UnresolvableTarget("the host name could not be resolved") from None
    addresses: list[IPAddress] = []
    for item in raw:
        try:
            address = ipaddress.ip_address(str(item).split("%", 1)[0])
        except ValueError:
            raise UnresolvableTarget("the host name resolved to an invalid address") from None
        if "%" in str(item):
            # A scoped address is link-local (or stranger); never reachable under any policy.
            raise ForbiddenTarget("link-local addresses are not allowed")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnresolvableTarget("the host name could not be resolved")
    return addresses


def default_resolver(host: str, port: int) -> list[str]:
    """Every address `getaddrinfo` gives for a TCP connection to host:port."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
