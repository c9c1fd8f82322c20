"""Hostile destination URLs (SPEC 3.4: internal addresses are fine for destinations, link-local
and cloud-metadata ones never; redirects are never followed). Verdicts on non-loopback
addresses are reached without connecting or resolving anything (`no_outbound`)."""

from __future__ import annotations

import threading

import pytest
from hostile_helpers import assert_clear_refusal, footprint
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

BASE = "/api/v1/destinations"
ALLOWED = [
    "http://127.0.0.1:9/hook",
    "http://[::1]:9/hook",
    "http://10.0.0.5/hook",
    "http://172.16.3.4:8443/hook",
    "http://192.168.1.2/hook",
    "http://100.64.0.1/hook",
    "https://[fd00::1]/hook",
]
REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.1.1/hook",
    "http://[fe80::1]/hook",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://0.0.0.0/hook",
    "http://0/hook",
    "http://[::]/hook",
    "http://224.0.0.1/hook",
    "http://255.255.255.255/hook",
    "http://metadata.google.internal/",
    "http://100.100.100.200/",  # Alibaba Cloud metadata
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "ftp://127.0.0.1/hook",
    "javascript:alert(1)",
    "http://",
    "not a url",
    "http://[::1/hook",
    "http://127.0.0.1\r\nX-Injected: 1/hook",
    "http://" + "a" * 3000 + ".test/",
]


@pytest.mark.parametrize("url", ALLOWED)
def test_internal_destinations_are_allowed(clients, people, no_outbound, url):
    response = clients["calls"].post(
        BASE, headers=people["admin"].headers, json={"name": f"d-{url[-12:]}", "url": url}
    )
    assert response.status_code == 201, response.get_json()
    assert no_outbound == []


@pytest.mark.parametrize("url", REFUSED, ids=range(len(REFUSED)))
def test_forbidden_destinations_are_422_and_change_nothing(clients, people, no_outbound, url):
    client, headers = clients["calls"], people["admin"].headers
    created = client.post(BASE, headers=headers, json={"name": "ok", "url": ALLOWED[0]})
    dest_id = created.get_json()["id"]
    before = footprint()
    assert_clear_refusal(client.post(BASE, headers=headers, json={"name": "x", "url": url}), 422)
    patched = client.patch(f"{BASE}/{dest_id}", headers=headers, json={"url": url})
    assert_clear_refusal(patched, 422)
    assert footprint() == before
    assert client.get(f"{BASE}/{dest_id}", headers=headers).get_json()["url"] == ALLOWED[0]
    assert no_outbound == []


@pytest.mark.parametrize(
    "answer", [["169.254.169.254"], ["10.0.0.1", "169.254.169.254"], ["fe80::1%eth0"], ["::"]]
)
def test_names_resolving_to_forbidden_addresses_are_refused(
    clients, people, no_outbound, monkeypatch, answer
):
    from call_downloader.net import ssrf

    monkeypatch.setattr(ssrf, "default_resolver", lambda host, port: answer)
    before = footprint()
    response = clients["calls"].post(
        BASE, headers=people["admin"].headers, json={"name": "n", "url": "http://hook.test/"}
    )
    assert_clear_refusal(response, 422)
    assert footprint() == before and no_outbound == []


@pytest.fixture
def redirecting_destination():
    hits: list[str] = []

    def app(environ, start_response):
        hits.append(environ["PATH_INFO"])
        location = "http://169.254.169.254/latest/meta-data/"
        return Response("", 307, headers={"Location": location})(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", hits
    server.shutdown()


def test_a_destination_redirecting_to_metadata_is_not_followed(
    clients, people, no_outbound, redirecting_destination
):
    url, hits = redirecting_destination
    client, headers = clients["calls"], people["admin"].headers
    dest = client.post(BASE, headers=headers, json={"name": "redir", "url": url}).get_json()
    result = client.post(f"{BASE}/{dest['id']}/test", headers=headers)
    assert result.status_code == 200, result.get_json()
    body = result.get_json()
    assert body["ok"] is False and body["status_code"] == 307
    assert hits == ["/hook"] and no_outbound == []
