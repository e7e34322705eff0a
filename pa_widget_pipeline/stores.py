"""The store registry: a YAML file of stores, validated by pydantic, every problem reported at once.

The path comes from `PA_WIDGET_STORES`; when it is unset the bundled demo registry (pointing at the
loopback sandbox) is used. Secrets are never in the file: it names the environment variables that hold them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Mapping
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pa_widget_pipeline.net import is_loopback_host
from pa_widget_pipeline.sync.contract import DEFAULT_METAOBJECT_TYPES, TYPE_KEYS

REGISTRY_ENV = "PA_WIDGET_STORES"
DEMO_REGISTRY_PATH = Path(__file__).parent / "sandbox" / "demo_stores.yaml"

STORE_KEY_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
SHOP_DOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
API_VERSION_RE = re.compile(r"^\d{4}-(01|04|07|10)$|^unstable$")
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
METAOBJECT_TYPE_RE = re.compile(r"^(\$app:)?[A-Za-z0-9_-]{3,255}$")


class RegistryError(ValueError):
    """The registry is invalid; `problems` lists every one, each naming the store and the field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"store registry {source} has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))


class UnknownStoreError(KeyError):
    def __init__(self, key: str, known: list[str]):
        self.key = key
        super().__init__(f"store {key!r} is not in the store registry (known: {', '.join(known) or 'none'})")

    def __str__(self) -> str:  # KeyError quotes its argument; keep the sentence readable
        return self.args[0]


def validate_base_url(url: str) -> str:
    """https anywhere; plain http only to a loopback sandbox; no credentials, query or fragment."""
    # urlsplit silently drops tabs and newlines, so a URL carrying them would pass the checks below and still
    # carry them (a header-injection attempt, or a paste error): refuse whitespace and control characters first.
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("must not contain whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise ValueError(f"must be an http(s) URL, got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.username or parts.password or "@" in parts.netloc:
        raise ValueError("must not carry credentials; name an environment variable instead")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(f"plain http is allowed only for a loopback sandbox, not {parts.hostname!r}")
    # Percent-encoded ("%2e%2e", "%2f") and backslash-separated dot segments count too: servers and proxies
    # decode and normalise them, so they climb out of the configured path just the same.
    if ".." in unquote(parts.path).replace("\\", "/").split("/"):
        raise ValueError("must not contain '..' path segments")
    return url.rstrip("/")


BaseUrl = Annotated[str, AfterValidator(validate_base_url)]


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"must be {what}, got {value!r}")
        return value

    return AfterValidator(check)


EnvName = Annotated[str, _matching(ENV_NAME_RE, "an environment variable name (A-Z, 0-9, _)")]


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    shop_domain: Annotated[str, _matching(SHOP_DOMAIN_RE, "a *.myshopify.com domain")]
    shopify_api_version: Annotated[str, _matching(API_VERSION_RE, "a quarterly version like 2025-10")]
    shopify_token_env: EnvName
    shopify_admin_url: BaseUrl | None = None
    pa_website_id: Annotated[str, _matching(GUID_RE, "a GUID")]
    pa_api_url: BaseUrl
    pa_auth_url: BaseUrl
    pa_client_id_env: EnvName
    pa_client_secret_env: EnvName
    metaobject_types: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_METAOBJECT_TYPES))
    allow_mass_delete: bool = False

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not STORE_KEY_RE.fullmatch(value):
            raise ValueError(
                f"store key {value!r} must be 1-64 lower-case letters, digits and '-', starting and ending "
                "with a letter or digit (it becomes a partition key and a path segment)"
            )
        return value

    @field_validator("metaobject_types", mode="before")
    @classmethod
    def _types(cls, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ValueError("must be a mapping of recommendation/merchandising/bundle to a metaobject type")
        unknown = sorted(set(value) - set(TYPE_KEYS))
        if unknown:
            raise ValueError(f"unknown type keys {unknown}; allowed: {list(TYPE_KEYS)}")
        merged = dict(DEFAULT_METAOBJECT_TYPES)
        for type_key, metaobject_type in value.items():
            if not isinstance(metaobject_type, str) or not METAOBJECT_TYPE_RE.fullmatch(metaobject_type):
                raise ValueError(f"{type_key}: {metaobject_type!r} is not a valid metaobject type")
            merged[type_key] = metaobject_type
        if len(set(merged.values())) != len(merged):
            raise ValueError("two widget types map to the same metaobject type")
        return merged

    @property
    def admin_url(self) -> str:
        return self.shopify_admin_url or f"https://{self.shop_domain}"

    @property
    def secret_env_names(self) -> tuple[str, str, str]:
        return (self.shopify_token_env, self.pa_client_id_env, self.pa_client_secret_env)

    def secrets(self, environ: Mapping[str, str] | None = None) -> "StoreSecrets":
        env = os.environ if environ is None else environ
        missing = [name for name in self.secret_env_names if not env.get(name)]
        if missing:
            raise RegistryError(
                "environment", [f"store {self.key!r}: environment variable {name} is not set" for name in missing]
            )
        return StoreSecrets(*(env[name] for name in self.secret_env_names))


@dataclass(frozen=True)
class StoreSecrets:
    shopify_token: str
    pa_client_id: str
    pa_client_secret: str

    def __repr__(self) -> str:  # never print secrets, even by accident
        return "StoreSecrets(<redacted>)"

    def values(self) -> tuple[str, str, str]:
        return (self.shopify_token, self.pa_client_id, self.pa_client_secret)


class StoreRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stores: list[StoreConfig]

    @model_validator(mode="after")
    def _unique(self) -> "StoreRegistry":
        seen: set[str] = set()
        dupes = sorted({s.key for s in self.stores if s.key in seen or seen.add(s.key)})
        if dupes:
            raise ValueError(f"duplicate store keys: {', '.join(dupes)}")
        return self

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.stores]

    def get(self, key: str) -> StoreConfig:
        for store in self.stores:
            if store.key == key:
                return store
        raise UnknownStoreError(key, self.keys)

    def secrets_for(self, key: str, environ: Mapping[str, str] | None = None) -> StoreSecrets:
        return self.get(key).secrets(environ)


def _problems_from(exc: ValidationError, raw: Any) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = "registry"
        if len(loc) >= 2 and loc[0] == "stores" and isinstance(loc[1], int):
            index = loc[1]
            entry = raw.get("stores", [])[index] if isinstance(raw, dict) else None
            store_key = entry.get("key") if isinstance(entry, dict) else None
            where = f"store {store_key!r}" if store_key else f"store #{index + 1}"
            loc = loc[2:]
        field = ".".join(str(p) for p in loc) or "(entry)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{where}: field {field}: {message}")
    return problems


def parse_registry(raw: Any, *, source: str = "<registry>", environ: Mapping[str, str] | None = None,
                   require_secrets: bool = True) -> StoreRegistry:
    if not isinstance(raw, dict):
        raise RegistryError(source, ["registry: the file must be a mapping with a 'stores' list"])
    try:
        registry = StoreRegistry.model_validate(raw)
    except ValidationError as exc:
        raise RegistryError(source, _problems_from(exc, raw)) from None
    if require_secrets:
        env = os.environ if environ is None else environ
        problems = [
            f"store {store.key!r}: field {field}: environment variable {name} is not set"
            for store in registry.stores
            for field, name in (
                ("shopify_token_env", store.shopify_token_env),
                ("pa_client_id_env", store.pa_client_id_env),
                ("pa_client_secret_env", store.pa_client_secret_env),
            )
            if not env.get(name)
        ]
        if problems:
            raise RegistryError(source, problems)
    return registry


def registry_path(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(REGISTRY_ENV)
    return Path(from_env) if from_env else DEMO_REGISTRY_PATH


def load_registry(path: str | os.PathLike | None = None, *, environ: Mapping[str, str] | None = None,
                  require_secrets: bool = True) -> StoreRegistry:
    resolved = registry_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(str(resolved), [f"registry: cannot read the file: {exc.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(str(resolved), [f"registry: not valid YAML: {exc}"]) from None
    return parse_registry(raw, source=str(resolved), environ=environ, require_secrets=require_secrets)
