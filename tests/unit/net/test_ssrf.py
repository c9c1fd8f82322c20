"""SSRF verdicts, table-driven. Nothing here connects anywhere: names go through an injected
resolver, literal addresses are judged without resolution."""

from __future__ import annotations

import ipaddress

import pytest
from netfixtures import fake_resolver

from call_downloader.net.ssrf import (
    ForbiddenTarget,
    Policy,
    UnresolvableTarget,
    categorize,
    check_url,
    default_resolver,
    parse_url,
)

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"

DNS = {
    "example.test": [PUBLIC_V4],
    "v6.example.test": [PUBLIC_V6],
    "dual.example.test": [PUBLIC_V4, PUBLIC_V6],
    "internal.test": ["10.0.0.7"],
    "loop.test": ["127.0.0.1"],
    "loop6.test": ["::1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "meta.test": ["169.254.169.254"],
    "linklocal.test": ["169.254.10.10"],
    "mixed.test": [PUBLIC_V4, "10.0.0.1"],  # one bad address is enough to refuse
    "mixed-meta.test": ["10.0.0.1", "169.254.169.254"],
    "zero.test": ["0.0.0.0"],
    "scoped.test": ["fe80::1%eth0"],
    "pbx.corp": ["10.1.2.3"],
    "other.corp": ["10.1.2.3"],
    "deep.pbx.corp": ["10.1.2.4"],
    "pbx-meta.corp": ["169.254.169.254"],
    "range.test": ["10.20.5.5"],
    "outside.test": ["10.21.0.1"],
    "localhost": ["127.0.0.1", "::1"],
    "foo.localhost": ["127.0.0.1"],
    "xn--bcher-kva.test": [PUBLIC_V4],
    "empty.test": [],
    "garbage.test": ["not-an-address"],
}


def verdict(url: str, policy: Policy) -> str:
    try:
        check_url(url, policy=policy, resolver=fake_resolver(DNS))
    except ForbiddenTarget:
        return "forbidden"
    except UnresolvableTarget:
        return "unresolvable"
    return "ok"


LOOPBACK_SPELLINGS = [
    "http://127.0.0.1/",
    "http://127.0.0.2:8080/x",
    "http://127.1/",
    "http://127.0.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7F000001/",
    "http://0177.0.0.1/",
    "http://0177.1/",
    "http://0x7f.0.0.1/",
    "http://0x7f.1/",
    "http://127.0.0.1./",
    "http://localhost/",
    "http://localhost./",
    "http://LOCALHOST/",
    "http://LocalHost:8080/",
    "http://foo.localhost/",
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[64:ff9b::127.0.0.1]/",  # NAT64
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",  # 6to4
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1
    "http://loop.test/",
    "http://loop6.test/",
    "http://mapped.test/",
    "http://１２７．０．０．１/",  # full-width digits and dots (UTS 46 maps them)
]

PRIVATE_AND_INTERNAL = [
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # CGNAT
    "http://012.0.0.1/",  # octal 10.0.0.1
    "http://167772161/",  # decimal 10.0.0.1
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[64:ff9b::a00:1]/",
    "http://[2002:c0a8:101::1]/",  # 6to4 of 192.168.1.1
    "http://internal.test/",
    "http://mixed.test/",
]

ALWAYS_FORBIDDEN = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.169.254./",
    "http://2852039166/",  # decimal 169.254.169.254
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[fd00:ec2::254]/",
    "http://168.63.129.16/",  # Azure wireserver (a public address!)
    "http://100.100.100.200/",  # Alibaba metadata
    "http://169.254.170.2/",  # ECS task metadata
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.GOOGLE.INTERNAL./",
    "http://metadata/",
    "http://x.metadata.google.internal/",
    "http://instance-data/",
    "http://meta.test/",
    "http://mixed-meta.test/",
    "http://169.254.1.1/",  # link-local
    "http://[fe80::1]/",
    "http://linklocal.test/",
    "http://scoped.test/",
    "http://0.0.0.0/",
    "http://0/",
    "http://0x0/",
    "http://[::]/",
    "http://zero.test/",
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "http://0.1.2.3/",  # "this network"
    "http://192.0.2.1/",  # documentation
    "http://[2001:db8::1]/",
    "http://[100::1]/",  # discard-only
    "http://[fec0::1]/",  # deprecated site-local
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo with a public client
]

MALFORMED = [
    "",
    "ftp://example.test/a.mp3",
    "file:///etc/passwd",
    "gopher://example.test/",
    "javascript:alert(1)",
    "example.test/a.mp3",
    "//example.test/a.mp3",
    "http://",
    "http:///a.mp3",
    "http:example.test",
    "http://user@example.test/",
    "http://user:pass@example.test/",
    "http://example.test@127.0.0.1/",
    "http://example.test\\@127.0.0.1/",
    "http://example.test\\a.mp3",
    "http://exa mple.test/",
    "http://example.test/a b.mp3",
    "http://example.test/\x00",
    "http://example.test/\r\nX-Injected: 1",
    "http://example.test/\ta",
    "http://example.test/\u200b",
    "http://example.test:0/",
    "http://example.test:65536/",
    "http://example.test:-1/",
    "http://example.test:abc/",
    "http://example.test:/",
    "http://example.test:8080:80/",
    "http://example.test:１２/",
    "http://[::1/",
    "http://[::1]x/",
    "http://[fe80::1%25eth0]/",
    "http://[not-v6]/",
    "http://1.2.3.4.5/",
    "http://256.0.0.1/",
    "http://08.0.0.1/",
    "http://0x/",
    "http://1.2.3.0x/",
    "http://4294967296/",
    "http://example..test/",
    "http://-example.test/",
    "http://%31%32%37.0.0.1/",
    "http://example.test%2f@127.0.0.1/",
    "http://" + "a" * 64 + ".test/",
    "http://example.test/" + "a" * 5000,
]


@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS)
def test_public_only_refuses_every_loopback_spelling(url: str) -> None:
    assert verdict(url, Policy.public_only()) == "forbidden"


@pytest.mark.parametrize("url", PRIVATE_AND_INTERNAL)
def test_public_only_refuses_private_addresses(url: str) -> None:
    assert verdict(url, Policy.public_only()) == "forbidden"


@pytest.mark.parametrize("url", ALWAYS_FORBIDDEN)
@pytest.mark.parametrize(
    "policy",
    [
        Policy.public_only(),
        Policy.destination(),
        # Even a wide allowlist cannot open link-local, metadata and the like.
        Policy.public_only(["169.254.0.0/16", "0.0.0.0/0", "::/0", "meta.test", "*.test"]),
    ],
    ids=["public_only", "destination", "public_only+allowlist"],
)
def test_always_forbidden(url: str, policy: Policy) -> None:
    assert verdict(url, policy) == "forbidden"


@pytest.mark.parametrize("url", MALFORMED)
@pytest.mark.parametrize("policy", [Policy.public_only(), Policy.destination()])
def test_malformed_urls_are_refused(url: str, policy: Policy) -> None:
    with pytest.raises(ForbiddenTarget) as info:
        check_url(url, policy=policy, resolver=fake_resolver(DNS))
    assert info.value.reason  # a short explanation for the user


@pytest.mark.parametrize(
    "url",
    [
        f"http://{PUBLIC_V4}/a.mp3",
        "https://example.test/calls/1.wav?sig=abc&x=1",
        "http://example.test:8080/a.mp3",
        "HTTPS://EXAMPLE.test/a.mp3",
        "http://example.test./a.mp3",
        "https://v6.example.test/a",
        "https://dual.example.test/a",
        f"http://[{PUBLIC_V6}]/a",
        "http://[64:ff9b::5db8:d822]/a",  # NAT64 of a public address (DNS64 networks)
        f"http://[::ffff:{PUBLIC_V4}]/a",
        "http://1572395042/a",  # decimal spelling of 93.184.216.34
        "http://bücher.test/a.mp3",
    ],
)
def test_public_only_allows_public_unicast(url: str) -> None:
    assert verdict(url, Policy.public_only()) == "ok"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost:9000/hook",
        "http://[::1]/hook",
        "http://10.0.0.1/hook",
        "http://192.168.1.20/hook",
        "http://[fd12::1]/hook",
        "http://internal.test/hook",
        "http://mixed.test/hook",
        "https://example.test/hook",
        "http://100.64.1.1/hook",
    ],
)
def test_destination_allows_internal_and_public(url: str) -> None:
    assert verdict(url, Policy.destination()) == "ok"


def test_destination_can_refuse_loopback() -> None:
    policy = Policy.destination(allow_loopback=False)
    assert verdict("http://127.0.0.1/hook", policy) == "forbidden"
    assert verdict("http://loop.test/hook", policy) == "forbidden"
    assert verdict("http://10.0.0.1/hook", policy) == "ok"


# --- allowlist --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowlist", "url", "expected"),
    [
        # by host name
        (["pbx.corp"], "http://pbx.corp/rec.wav", "ok"),
        (["PBX.corp."], "http://pbx.corp/rec.wav", "ok"),
        (["pbx.corp"], "http://other.corp/rec.wav", "forbidden"),  # same address, other name
        (["pbx.corp"], "http://deep.pbx.corp/rec.wav", "forbidden"),
        (["*.pbx.corp"], "http://deep.pbx.corp/rec.wav", "ok"),
        (["*.corp"], "http://other.corp/rec.wav", "ok"),
        (["*.corp"], "http://pbx-meta.corp/rec.wav", "forbidden"),  # metadata never
        (["pbx.corp"], "http://10.1.2.3/rec.wav", "forbidden"),  # the name, not its address
        # by exact address
        (["10.1.2.3"], "http://10.1.2.3/rec.wav", "ok"),
        (["10.1.2.3"], "http://pbx.corp/rec.wav", "ok"),
        (["10.1.2.3"], "http://other.corp/rec.wav", "ok"),
        (["10.1.2.3"], "http://10.1.2.4/rec.wav", "forbidden"),
        (["10.1.2.3"], "http://deep.pbx.corp/rec.wav", "forbidden"),
        (["10.1.2.3"], "http://[::ffff:10.1.2.3]/rec.wav", "ok"),
        (["127.1"], "http://127.0.0.1/rec.wav", "ok"),  # libc spelling of the entry
        (["127.0.0.1"], "http://127.1/rec.wav", "ok"),
        (["127.0.0.1"], "http://loop.test/rec.wav", "ok"),
        (["127.0.0.1"], "http://localhost/rec.wav", "forbidden"),  # ::1 is not listed
        (["127.0.0.1", "::1"], "http://localhost/rec.wav", "ok"),
        (["localhost"], "http://localhost/rec.wav", "ok"),
        (["fd00::5"], "http://[fd00::5]/rec.wav", "ok"),
        (["[fd00::5]"], "http://[fd00::5]/rec.wav", "ok"),
        # by CIDR range
        (["10.20.0.0/16"], "http://range.test/rec.wav", "ok"),
        (["10.20.0.0/16"], "http://10.20.255.1/rec.wav", "ok"),
        (["10.20.0.0/16"], "http://outside.test/rec.wav", "forbidden"),
        (["10.20.0.1/16"], "http://10.20.9.9/rec.wav", "ok"),  # host bits tolerated
        (["fd00:1234::/32"], "http://[fd00:1234:5::1]/rec.wav", "ok"),
        (["fd00:1234::/32"], "http://[fd00:1235::1]/rec.wav", "forbidden"),
        (["10.0.0.0/8"], "http://mixed-meta.test/rec.wav", "forbidden"),
        (["169.254.0.0/16"], "http://169.254.169.254/", "forbidden"),
        (["169.254.0.0/16"], "http://169.254.1.1/", "forbidden"),
        # several entries, blanks ignored
        (["", " pbx.corp ", "10.20.0.0/16"], "http://range.test/rec.wav", "ok"),
        ([], "http://pbx.corp/rec.wav", "forbidden"),
        # ports (issue 16, item 9): an entry without one opens 80 and 443 only
        (["pbx.corp"], "https://pbx.corp/rec.wav", "ok"),
        (["pbx.corp"], "http://pbx.corp:443/rec.wav", "ok"),
        (["pbx.corp"], "http://pbx.corp:8080/rec.wav", "forbidden"),
        (["10.1.2.3"], "http://10.1.2.3:6379/", "forbidden"),
        (["10.20.0.0/16"], "http://10.20.1.1:22/", "forbidden"),
        (["127.0.0.1"], "http://127.0.0.1:5432/", "forbidden"),
        (["pbx.corp:8080"], "http://pbx.corp:8080/rec.wav", "ok"),
        (["pbx.corp:8080"], "http://pbx.corp/rec.wav", "forbidden"),
        (["*.corp:8443"], "https://pbx.corp:8443/rec.wav", "ok"),
        (["*.corp:8443"], "https://pbx.corp/rec.wav", "forbidden"),
        (["10.1.2.3:8080"], "http://pbx.corp:8080/rec.wav", "ok"),
        (["10.20.0.0/16:8080"], "http://10.20.9.9:8080/", "ok"),
        (["10.20.0.0/16:8080"], "http://10.20.9.9:8081/", "forbidden"),
        (["[fd00::5]:8443"], "https://[fd00::5]:8443/", "ok"),
        (["[fd00::5]:8443"], "https://[fd00::5]/", "forbidden"),
        (["fd00::5"], "http://[fd00::5]/", "ok"),  # unbracketed IPv6 takes no port
        (["[fd00::/16]:9000"], "http://[fd00::5]:9000/", "ok"),
        (["127.0.0.1:*"], "http://127.0.0.1:5432/", "ok"),
        (["pbx.corp:*"], "http://pbx.corp:1/", "ok"),
    ],
)
def test_allowlist(allowlist: list[str], url: str, expected: str) -> None:
    assert verdict(url, Policy.public_only(allowlist)) == expected


@pytest.mark.parametrize(
    "entry",
    ["http://pbx.corp", "10.0.0.0/33", "pbx corp", "a@b", "1.2.3.4.5", "pbx.corp:0",
     "pbx.corp:65536", "pbx.corp:http", "[fd00::5]:x"],
)  # fmt: skip
def test_bad_allowlist_entries_are_configuration_errors(entry: str) -> None:
    with pytest.raises(ValueError, match="AUDIO_URL_ALLOWLIST"):
        Policy.public_only([entry])
    with pytest.raises(ValueError, match="DESTINATION_URL_ALLOWLIST"):
        Policy.public_only([entry], setting="DESTINATION_URL_ALLOWLIST")


# --- resolution and pinning ------------------------------------------------------------------


def test_every_address_is_checked_and_returned_for_pinning() -> None:
    calls: list[str] = []
    target = check_url(
        "https://dual.example.test:8443/a/b.mp3?x=1#frag",
        policy=Policy.public_only(),
        resolver=fake_resolver(DNS, calls),
    )
    assert calls == ["dual.example.test"]  # resolved once; the caller connects to these
    assert target.addresses == [ipaddress.ip_address(PUBLIC_V4), ipaddress.ip_address(PUBLIC_V6)]
    assert (target.scheme, target.host, target.port) == ("https", "dual.example.test", 8443)
    assert target.path_and_query == "/a/b.mp3?x=1"
    assert target.host_header == "dual.example.test:8443"
    assert target.url_for(target.addresses[0]) == f"https://{PUBLIC_V4}:8443/a/b.mp3?x=1"
    assert target.url_for(target.addresses[1]) == f"https://[{PUBLIC_V6}]:8443/a/b.mp3?x=1"


def test_literal_addresses_are_not_resolved() -> None:
    def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError(f"resolver called for {host}")

    target = check_url("http://0x5db8d822/a", policy=Policy.public_only(), resolver=no_dns)
    assert target.addresses == [ipaddress.ip_address(PUBLIC_V4)]
    assert target.host == PUBLIC_V4  # canonical spelling for the Host header
    target = check_url(
        f"http://[{PUBLIC_V6.upper()}]:81/", policy=Policy.public_only(), resolver=no_dns
    )
    assert target.host_header == f"[{PUBLIC_V6}]:81"
    with pytest.raises(ForbiddenTarget):
        check_url("http://0177.0.0.1/", policy=Policy.public_only(), resolver=no_dns)


def test_default_port_is_left_out_of_the_host_header() -> None:
    resolver = fake_resolver(DNS)
    target = check_url("http://example.test:80/", policy=Policy.public_only(), resolver=resolver)
    assert (target.port, target.host_header) == (80, "example.test")
    target = check_url("https://example.test/", policy=Policy.public_only(), resolver=resolver)
    assert (target.port, target.host_header) == (443, "example.test")


def test_idna_and_percent_encoding_normalisation() -> None:
    target = parse_url("http://BÜCHER.test/Straße/a%20b.mp3?q=ä&r=%2F")
    assert target.host == "xn--bcher-kva.test"
    assert target.path_and_query == "/Stra%C3%9Fe/a%20b.mp3?q=%C3%A4&r=%2F"
    assert parse_url("http://example.test").path_and_query == "/"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://nowhere.test/", UnresolvableTarget),
        ("http://empty.test/", UnresolvableTarget),
        ("http://garbage.test/", UnresolvableTarget),
    ],
)
def test_resolution_failures(url: str, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        check_url(url, policy=Policy.destination(), resolver=fake_resolver(DNS))
    assert "resolv" in info.value.reason


def test_default_resolver_uses_getaddrinfo_for_local_names() -> None:
    # `localhost` resolves from /etc/hosts: no network involved.
    addresses = default_resolver("localhost", 80)
    assert addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    target = check_url("http://localhost:9/", policy=Policy.destination())
    assert target.addresses and all(a.is_loopback for a in target.addresses)
    with pytest.raises(ForbiddenTarget):
        check_url("http://localhost:9/", policy=Policy.public_only())


def test_resolver_errors_other_than_gaierror() -> None:
    def broken(host: str, port: int) -> list[str]:
        raise TimeoutError("resolver timed out")

    with pytest.raises(UnresolvableTarget):
        check_url("http://example.test/", policy=Policy.public_only(), resolver=broken)


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("8.8.8.8", None),
        ("127.0.0.1", "loopback"),
        ("10.1.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.3.3", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.1.1.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::abcd", "link-local"),
        ("ff05::2", "multicast"),
        ("::ffff:192.168.0.1", "private"),
        ("2002:a9fe:a9fe::1", "cloud metadata"),
        ("2606:4700:4700::1111", None),
        ("4000::1", "reserved"),  # outside 2000::/3: not allocated for global unicast
    ],
)
def test_categories(address: str, category: str | None) -> None:
    assert categorize(ipaddress.ip_address(address)) == category
