"""The store registry: every kind of bad entry is refused with a message naming the store and the field."""

import pytest

from pa_widget_pipeline.stores import (
    DEMO_REGISTRY_PATH,
    RegistryError,
    UnknownStoreError,
    load_registry,
    parse_registry,
)
from pa_widget_pipeline_tests.harness import REGISTRY_TEST_ENV, registry_entry

ENV = REGISTRY_TEST_ENV
entry = registry_entry




def problems_for(*entries, environ=ENV):
    with pytest.raises(RegistryError) as info:
        parse_registry({"stores": list(entries)}, environ=environ)
    return info.value.problems


def test_valid_entry_gets_defaults_and_https_admin_url():
    registry = parse_registry({"stores": [entry()]}, environ=ENV)
    store = registry.get("acme-au")
    assert store.admin_url == "https://acme-au.myshopify.com"
    assert store.metaobject_types["bundle"] == "pa_bundle_widget"
    assert store.allow_mass_delete is False


def test_every_problem_is_reported_at_once_naming_store_and_field():
    problems = problems_for(
        entry(key="one", shop_domain="evil.example.com", colour="red"),
        entry(key="two", pa_api_url="http://pa.example.com"),
    )
    text = "\n".join(problems)
    assert "store 'one': field shop_domain" in text
    assert "store 'one': field colour: unknown key" in text
    assert "store 'two': field pa_api_url" in text and "loopback" in text
    assert len(problems) == 3


def test_duplicate_store_keys_refused():
    problems = problems_for(entry(), entry())
    assert any("duplicate store keys: acme-au" in p for p in problems)


@pytest.mark.parametrize(
    "field,value,fragment",
    [
        ("pa_api_url", "https://user:pw@pa.example", "credentials"),
        ("shopify_admin_url", "http://10.0.0.5:8790/shops/x", "loopback"),
        ("shopify_admin_url", "ftp://127.0.0.1/x", "scheme"),
        ("pa_auth_url", "https://pa.example/../admin", "'..'"),
        ("key", "../etc", "store key"),
        ("key", "Acme AU", "store key"),
        ("pa_website_id", "not-a-guid", "GUID"),
        ("shopify_api_version", "latest", "quarterly"),
        ("shopify_token_env", "lower-case", "environment variable name"),
        ("metaobject_types", {"popup": "x_widget"}, "unknown type keys"),
    ],
)
def test_hostile_or_malformed_entries_refused(field, value, fragment):
    problems = problems_for(entry(**{field: value}))
    assert len(problems) == 1
    assert f"field {field}" in problems[0]
    assert fragment in problems[0]


def test_plain_http_allowed_for_loopback_sandbox_only():
    registry = parse_registry(
        {"stores": [entry(pa_api_url="http://127.0.0.1:8789", shopify_admin_url="http://localhost:8790/shops/a")]},
        environ=ENV,
    )
    assert registry.get("acme-au").pa_api_url == "http://127.0.0.1:8789"


def test_missing_environment_variables_reported_per_store_without_values():
    problems = problems_for(entry(), entry(key="b", shopify_token_env="TOK2"), environ={"CID": "c"})
    assert "store 'acme-au': field shopify_token_env: environment variable TOK is not set" in problems
    assert "store 'b': field shopify_token_env: environment variable TOK2 is not set" in problems
    assert sum("CSEC" in p for p in problems) == 2


def test_secrets_for_one_store_and_never_in_repr():
    registry = parse_registry({"stores": [entry()]}, environ=ENV)
    secrets = registry.secrets_for("acme-au", ENV)
    assert secrets.values() == ("t", "c", "s")
    assert "t" not in repr(secrets).replace("StoreSecrets", "").replace("redacted", "")


def test_unknown_store_is_refused_with_known_keys():
    registry = parse_registry({"stores": [entry()]}, environ=ENV)
    with pytest.raises(UnknownStoreError) as info:
        registry.get("nope")
    assert "store 'nope' is not in the store registry (known: acme-au)" == str(info.value)


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stores: [unclosed")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(bad)


def test_registry_path_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "stores.yaml"
    path.write_text("stores:\n  - " + "\n    ".join(f"{k}: {v!r}" for k, v in entry().items()))
    monkeypatch.setenv("PA_WIDGET_STORES", str(path))
    assert load_registry(environ=ENV).keys == ["acme-au"]


def test_bundled_demo_registry_is_valid():
    registry = load_registry(DEMO_REGISTRY_PATH, require_secrets=False)
    assert registry.keys == ["demo-healthy", "demo-large", "demo-broken-bundle"]
