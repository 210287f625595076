"""PUBLIC_URL (the base of links in emails) follows HOST and PORT unless it is set."""

from __future__ import annotations

from app.core.settings import Settings


def test_public_url_follows_port_and_host(monkeypatch):
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    monkeypatch.setenv("PORT", "9001")
    assert Settings().public_url == "http://127.0.0.1:9001"
    monkeypatch.setenv("HOST", "localhost")
    assert Settings().public_url == "http://localhost:9001"
    assert Settings(port=8123).public_url == "http://localhost:8123"


def test_public_url_defaults_to_the_default_listen_address(monkeypatch):
    for name in ("PUBLIC_URL", "HOST", "PORT"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().public_url == "http://127.0.0.1:8000"


def test_an_explicit_public_url_wins(monkeypatch):
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("PUBLIC_URL", "https://app.example.com")
    assert Settings().public_url == "https://app.example.com"
