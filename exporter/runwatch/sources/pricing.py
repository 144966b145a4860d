"""What an Azure VM costs per hour: the Azure Retail Prices API, cached, with a fallback.

The API (https://prices.azure.com/api/retail/prices, no auth) answers an OData
`$filter` with `{"Items": [...], "NextPageLink": url-or-null}`. Since
api-version 2023-01-01-preview the filter's values are compared
case-sensitively, so runwatch asks for the canonical SKU name
(`canonical_sku`: `standard_d8s_v3` -> `Standard_D8s_v3`, as `armSkuName`
spells it) and the region as ARM spells it (`eastus`).

For a VM size, region, OS and priority the meter is the pay-as-you-go hourly
one: items of `type` Consumption, per `1 Hour`; `productName` ends in Windows
for a Windows VM (a Windows VM with Azure Hybrid Benefit pays the Linux price:
the caller passes os_type "linux" then), and `skuName` ends in Spot or Low
Priority for those priorities (neither for regular VMs).

Where a price comes from, in order: the config's `price_per_hour`; the disk
cache while fresh (default 7 days); the API; the stale cache; the bundled
table `data/azure_vm_prices.json` (approximate Linux pay-as-you-go list prices,
for offline use; none for Windows or Spot). A malformed cache entry is ignored.
Stdlib only: the price lookup needs no SDK.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import resources

from ..settings import PRICE_CACHE, data_dir, ensure_private_dir, private_opener

log = logging.getLogger("runwatch")

RETAIL_PRICES_URL = "https://prices.azure.com/api/retail/prices"
API_VERSION = "2023-01-01-preview"
DEFAULT_TTL = 7 * 24 * 3600.0
MAX_PAGES = 20


class PriceUnavailable(Exception):
    pass


@dataclass(frozen=True)
class Price:
    usd_per_hour: float
    origin: str        # config, cache, api, stale-cache, fallback
    sku: str
    region: str


def norm_sku(sku: str) -> str:
    return sku.strip().lower().replace(" ", "_")


_SIZE = re.compile(r"([a-z]+)(\d+(?:-\d+)?)([a-z]*)", re.I)      # D8s, NC24ads, E96-48ads, GS5


def canonical_sku(sku: str) -> str:
    """A VM size as the prices API's armSkuName spells it, from any case:
    tier capitalised (Standard, Basic), family upper and features lower (D8ds,
    NC24ads), version lower (v5), accelerators upper (A100, T4, H100), other
    words lower (cc) but Promo."""
    parts = norm_sku(sku).split("_")
    out = [parts[0].capitalize()]
    for i, p in enumerate(parts[1:]):
        m = _SIZE.fullmatch(p) if i == 0 else None
        if m:
            out.append(m.group(1).upper() + m.group(2) + m.group(3).lower())
        elif re.fullmatch(r"v\d+", p):
            out.append(p)
        elif p == "promo":
            out.append("Promo")
        elif any(c.isdigit() for c in p):
            out.append(p.upper())
        else:
            out.append(p)
    return "_".join(out)


OS_TYPES = ("linux", "windows")
PRIORITIES = ("regular", "spot", "low")


def norm_region(region: str) -> str:
    return region.strip().lower().replace(" ", "")


def is_meter(item: dict, os_type: str = "linux", priority: str = "regular") -> bool:
    """The pay-as-you-go hourly meter of a VM size for this OS and priority, nothing else."""
    if item.get("type") != "Consumption":
        return False
    if str(item.get("unitOfMeasure", "")).strip().lower() != "1 hour":
        return False
    if item.get("serviceName", "Virtual Machines") != "Virtual Machines":
        return False
    sku_name = str(item.get("skuName", ""))
    got_priority = "spot" if "Spot" in sku_name else "low" if "Low Priority" in sku_name else "regular"
    got_os = "windows" if "Windows" in str(item.get("productName", "")) else "linux"
    return got_priority == priority and got_os == os_type


def pick_price(items: list[dict], sku: str, region: str, *, os_type: str = "linux",
               priority: str = "regular") -> float | None:
    sku_n, region_n = norm_sku(sku), norm_region(region)
    prices = [float(i["retailPrice"]) for i in items
              if is_meter(i, os_type, priority)
              and norm_sku(str(i.get("armSkuName", ""))) == sku_n
              and norm_region(str(i.get("armRegionName", ""))) == region_n
              and isinstance(i.get("retailPrice"), (int, float))]
    prices = [p for p in prices if p > 0] or prices
    return min(prices) if prices else None


def price_key(sku: str, region: str, os_type: str = "linux", priority: str = "regular") -> str:
    """The cache (and bundled table) key: region/sku, then /os and /priority when not linux/regular."""
    key = f"{norm_region(region)}/{norm_sku(sku)}"
    if os_type != "linux":
        key += f"/{os_type}"
    if priority != "regular":
        key += f"/{priority}"
    return key


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _valid_entry(hit, now: float) -> bool:
    return (isinstance(hit, dict) and _number(hit.get("usd_per_hour")) and hit["usd_per_hour"] >= 0
            and _number(hit.get("fetched")) and hit["fetched"] <= now + 86400)


def load_fallback() -> dict[str, float]:
    """{"region/sku": usd_per_hour} from the bundled table, keys normalised."""
    text = resources.files("runwatch").joinpath("data/azure_vm_prices.json").read_text("utf-8")
    table = json.loads(text)
    return {f"{norm_region(r)}/{norm_sku(s)}": float(p)
            for r, skus in table["prices"].items() for s, p in skus.items()}


class RetailPrices:
    """Hourly pay-as-you-go prices by VM size, region, OS and priority."""

    def __init__(self, base_url: str = RETAIL_PRICES_URL, cache_path: str | None = None,
                 ttl: float = DEFAULT_TTL, timeout: float = 20.0, fallback: dict | None = None,
                 clock=time.time, directory: str | None = None):
        """The cache is cache_path, else PRICE_CACHE in the data directory: `directory` (the
        command's --data-dir or the config's data_dir), else settings.data_dir's rule."""
        self.base_url = base_url
        self.cache_path = cache_path or os.path.join(data_dir(directory), PRICE_CACHE)
        self.ttl, self.timeout, self.clock = ttl, timeout, clock
        self._fallback = fallback
        self._lock = threading.Lock()
        self.requests = 0

    # ------------------------------------------------------------ lookup

    def hourly(self, sku: str, region: str, *, os_type: str = "linux", priority: str = "regular") -> Price:
        key = price_key(sku, region, os_type, priority)
        with self._lock:
            cache = self._read_cache()
            now = self.clock()
            hit = cache.get(key)
            if hit is not None and not _valid_entry(hit, now):
                log.warning("azure prices: ignoring a malformed cache entry for %s in %s", key, self.cache_path)
                hit = None
            if hit and now - hit["fetched"] < self.ttl:
                return Price(hit["usd_per_hour"], "cache", sku, region)
            try:
                usd = self.fetch(sku, region, os_type=os_type, priority=priority)
            except PriceUnavailable as e:
                if hit:
                    log.warning("azure prices: %s; using the cached price from %s", e,
                                time.strftime("%Y-%m-%d", time.gmtime(hit["fetched"])))
                    return Price(hit["usd_per_hour"], "stale-cache", sku, region)
                fb = self.fallback().get(key)
                if fb is not None:
                    log.warning("azure prices: %s; using the bundled approximate price %.4f USD/h for %s "
                                "(set price_per_hour to override)", e, fb, key)
                    return Price(fb, "fallback", sku, region)
                raise PriceUnavailable(f"{e}; no cached or bundled price for {key}; "
                                       f"set price_per_hour in the config") from None
            cache[key] = {"usd_per_hour": usd, "fetched": now}
            self._write_cache(cache)
            return Price(usd, "api", sku, region)

    def fallback(self) -> dict[str, float]:
        if self._fallback is None:
            try:
                self._fallback = load_fallback()
            except (OSError, ValueError, KeyError):
                self._fallback = {}
        return self._fallback

    # ------------------------------------------------------------ the API

    def query_url(self, sku: str, region: str) -> str:
        """All Consumption meters of the size in the region (OS and priority are picked from them)."""
        flt = (f"serviceName eq 'Virtual Machines' and armRegionName eq '{norm_region(region)}' "
               f"and armSkuName eq '{canonical_sku(sku)}' and priceType eq 'Consumption'")
        return f"{self.base_url}?{urllib.parse.urlencode({'api-version': API_VERSION, '$filter': flt})}"

    def fetch(self, sku: str, region: str, *, os_type: str = "linux", priority: str = "regular") -> float:
        """Ask the API, following NextPageLink; PriceUnavailable on any failure or no match."""
        url: str | None = self.query_url(sku, region)
        items: list[dict] = []
        pages = 0
        while url and pages < MAX_PAGES:
            if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise PriceUnavailable(f"retail prices API: not an http(s) URL: {str(url)[:200]!r}")
            pages += 1
            self.requests += 1
            try:
                req = urllib.request.Request(url, headers={"Accept": "application/json",  # noqa: S310 - scheme checked above
                                                           "User-Agent": "runwatch"})
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - scheme checked above
                    page = json.load(resp)
            except urllib.error.HTTPError as e:
                raise PriceUnavailable(f"retail prices API answered HTTP {e.code}") from None
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = getattr(e, "reason", e)
                raise PriceUnavailable(f"retail prices API unreachable ({reason})") from None
            items.extend(page.get("Items") or [])
            url = page.get("NextPageLink")
        usd = pick_price(items, sku, region, os_type=os_type, priority=priority)
        if usd is None:
            what = {"regular": "pay-as-you-go", "spot": "Spot", "low": "Low Priority"}[priority]
            raise PriceUnavailable(f"no {os_type.capitalize()} {what} price for {canonical_sku(sku)} in "
                                   f"{norm_region(region)} ({len(items)} item(s) looked at)")
        return usd

    # ------------------------------------------------------------ cache

    def _read_cache(self) -> dict:
        try:
            with open(self.cache_path, encoding="utf-8") as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_cache(self, cache: dict) -> None:
        try:
            ensure_private_dir(os.path.dirname(os.path.abspath(self.cache_path)))
            tmp = f"{self.cache_path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8", opener=private_opener) as f:
                json.dump(cache, f, indent=1, sort_keys=True)
            os.replace(tmp, self.cache_path)
        except OSError as e:
            log.warning("azure prices: cannot write the cache %s: %s", self.cache_path, e.strerror)
