"""What an Azure VM costs per hour: the Azure Retail Prices API, cached, with a fallback.

The API (https://prices.azure.com/api/retail/prices, no auth) answers an OData
`$filter` with `{"Items": [...], "NextPageLink": url-or-null}`. For a VM size
and region we want the Linux pay-as-you-go price: items of `type`
Consumption, not Spot or Low Priority (`skuName`), not Windows
(`productName`), per `1 Hour`. SKU names are compared case-insensitively
(`standard_d8s_v3` is `Standard_D8s_v3`), regions as ARM spells them
(`eastus`).

Where a price comes from, in order: the config's `price_per_hour`; the disk
cache while fresh (default 7 days); the API; the stale cache; the bundled
table `data/azure_vm_prices.json` (approximate list prices, for offline use).
Stdlib only: the price lookup needs no SDK.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import resources

from ..settings import PRICE_CACHE, data_dir

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


def norm_region(region: str) -> str:
    return region.strip().lower().replace(" ", "")


def is_linux_on_demand(item: dict) -> bool:
    """The pay-as-you-go Linux hourly price of a VM size, nothing else."""
    if item.get("type") != "Consumption":
        return False
    sku_name = str(item.get("skuName", ""))
    if "Spot" in sku_name or "Low Priority" in sku_name:
        return False
    if "Windows" in str(item.get("productName", "")):
        return False
    if str(item.get("unitOfMeasure", "")).strip().lower() != "1 hour":
        return False
    return item.get("serviceName", "Virtual Machines") == "Virtual Machines"


def pick_price(items: list[dict], sku: str, region: str) -> float | None:
    sku_n, region_n = norm_sku(sku), norm_region(region)
    prices = [float(i["retailPrice"]) for i in items
              if is_linux_on_demand(i)
              and norm_sku(str(i.get("armSkuName", ""))) == sku_n
              and norm_region(str(i.get("armRegionName", ""))) == region_n
              and i.get("retailPrice") is not None]
    prices = [p for p in prices if p > 0] or prices
    return min(prices) if prices else None


def load_fallback() -> dict[str, float]:
    """{"region/sku": usd_per_hour} from the bundled table, keys normalised."""
    text = resources.files("runwatch").joinpath("data/azure_vm_prices.json").read_text("utf-8")
    table = json.loads(text)
    return {f"{norm_region(r)}/{norm_sku(s)}": float(p)
            for r, skus in table["prices"].items() for s, p in skus.items()}


class RetailPrices:
    """Hourly Linux pay-as-you-go prices by VM size and region."""

    def __init__(self, base_url: str = RETAIL_PRICES_URL, cache_path: str | None = None,
                 ttl: float = DEFAULT_TTL, timeout: float = 20.0, fallback: dict | None = None,
                 clock=time.time):
        self.base_url = base_url
        self.cache_path = cache_path or os.path.join(data_dir(), PRICE_CACHE)
        self.ttl, self.timeout, self.clock = ttl, timeout, clock
        self._fallback = fallback
        self._lock = threading.Lock()
        self.requests = 0

    # ------------------------------------------------------------ lookup

    def hourly(self, sku: str, region: str) -> Price:
        key = f"{norm_region(region)}/{norm_sku(sku)}"
        with self._lock:
            cache = self._read_cache()
            hit = cache.get(key)
            now = self.clock()
            if hit and now - hit["fetched"] < self.ttl:
                return Price(hit["usd_per_hour"], "cache", sku, region)
            try:
                usd = self.fetch(sku, region)
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
        flt = (f"serviceName eq 'Virtual Machines' and armRegionName eq '{norm_region(region)}' "
               f"and armSkuName eq '{sku.strip()}' and priceType eq 'Consumption'")
        return f"{self.base_url}?{urllib.parse.urlencode({'api-version': API_VERSION, '$filter': flt})}"

    def fetch(self, sku: str, region: str) -> float:
        """Ask the API, following NextPageLink; PriceUnavailable on any failure or no match."""
        url: str | None = self.query_url(sku, region)
        items: list[dict] = []
        pages = 0
        while url and pages < MAX_PAGES:
            pages += 1
            self.requests += 1
            try:
                req = urllib.request.Request(url, headers={"Accept": "application/json",
                                                           "User-Agent": "runwatch"})
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                    page = json.load(resp)
            except urllib.error.HTTPError as e:
                raise PriceUnavailable(f"retail prices API answered HTTP {e.code}") from None
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = getattr(e, "reason", e)
                raise PriceUnavailable(f"retail prices API unreachable ({reason})") from None
            items.extend(page.get("Items") or [])
            url = page.get("NextPageLink")
        usd = pick_price(items, sku, region)
        if usd is None:
            raise PriceUnavailable(f"no Linux pay-as-you-go price for {sku} in {region} "
                                   f"({len(items)} item(s) looked at)")
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
            os.makedirs(os.path.dirname(self.cache_path) or ".", exist_ok=True)
            tmp = f"{self.cache_path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(cache, f, indent=1, sort_keys=True)
            os.replace(tmp, self.cache_path)
        except OSError as e:
            log.warning("azure prices: cannot write the cache %s: %s", self.cache_path, e.strerror)
