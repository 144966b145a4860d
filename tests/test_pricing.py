"""The Retail Prices client against a local server with the real response shape."""
from __future__ import annotations

import json

import pytest

from runwatch.sources.pricing import Price, PriceUnavailable, RetailPrices, load_fallback, pick_price
from support.fakes.netguard import no_network  # noqa: F401
from support.fakes.prices_server import FakePrices, d8s_v3_items, item


@pytest.fixture
def prices():
    p = FakePrices()
    yield p
    p.stop()


def test_linux_consumption_price_across_pages(prices, tmp_path):
    rp = RetailPrices(base_url=prices.api, cache_path=str(tmp_path / "c.json"))
    got = rp.hourly("Standard_D8s_v3", "eastus")
    assert got == Price(0.384, "api", "Standard_D8s_v3", "eastus")
    assert len(prices.queries) == 3                       # 6 items, 2 per page, via NextPageLink
    flt = prices.queries[0]["$filter"][0]
    assert "serviceName eq 'Virtual Machines'" in flt and "armRegionName eq 'eastus'" in flt
    assert "armSkuName eq 'Standard_D8s_v3'" in flt and "priceType eq 'Consumption'" in flt
    assert prices.queries[0]["api-version"] == ["2023-01-01-preview"]
    assert prices.queries[2]["$skip"] == ["4"]


def test_spot_windows_low_priority_and_reservations_are_filtered_out():
    items = d8s_v3_items()
    assert pick_price(items, "Standard_D8s_v3", "eastus") == 0.384
    assert pick_price([i for i in items if i["retailPrice"] != 0.384], "Standard_D8s_v3", "eastus") is None


def test_sku_and_region_case_is_normalised(prices, tmp_path):
    prices.items = [item("Standard_D8s_v3", "eastus", 0.384, product="Virtual Machines DSv3 Series")]
    rp = RetailPrices(base_url=prices.api, cache_path=str(tmp_path / "c.json"))
    assert rp.hourly("standard_d8s_v3", "EastUS").usd_per_hour == 0.384
    # the cache key is normalised too: another spelling is a cache hit
    assert rp.hourly("STANDARD_D8S_V3", "eastus").origin == "cache"
    assert len(prices.queries) == 1


def test_cache_on_disk_expires(prices, tmp_path):
    now = [1_000_000.0]
    path = tmp_path / "cache" / "prices.json"
    rp = RetailPrices(base_url=prices.api, cache_path=str(path), ttl=3600, clock=lambda: now[0])
    assert rp.hourly("Standard_D8s_v3", "eastus").origin == "api"
    n = len(prices.queries)
    cached = json.loads(path.read_text())
    assert cached == {"eastus/standard_d8s_v3": {"usd_per_hour": 0.384, "fetched": 1_000_000.0}}
    # a new process (new client) reads the disk cache
    rp2 = RetailPrices(base_url=prices.api, cache_path=str(path), ttl=3600, clock=lambda: now[0] + 3599)
    assert rp2.hourly("Standard_D8s_v3", "eastus").origin == "cache"
    assert len(prices.queries) == n
    now[0] += 3601                                     # expired: asks the API again
    prices.items = [item("Standard_D8s_v3", "eastus", 0.40, product="Virtual Machines DSv3 Series")]
    assert rp.hourly("Standard_D8s_v3", "eastus") == Price(0.40, "api", "Standard_D8s_v3", "eastus")
    assert len(prices.queries) == n + 1


def test_expired_cache_is_used_when_the_api_is_down(prices, tmp_path):
    now = [0.0]
    rp = RetailPrices(base_url=prices.api, cache_path=str(tmp_path / "c.json"), ttl=10, clock=lambda: now[0])
    rp.hourly("Standard_D8s_v3", "eastus")
    prices.down = True
    now[0] = 100.0
    assert rp.hourly("Standard_D8s_v3", "eastus") == Price(0.384, "stale-cache", "Standard_D8s_v3", "eastus")


def test_offline_fallback_table(tmp_path):
    # nothing listens on this port: the API is unreachable
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rp = RetailPrices(base_url=f"http://127.0.0.1:{port}/api/retail/prices", cache_path=str(tmp_path / "c.json"),
                      timeout=2)
    got = rp.hourly("standard_d8s_v3", "eastus")
    assert got.origin == "fallback" and got.usd_per_hour == load_fallback()["eastus/standard_d8s_v3"]
    with pytest.raises(PriceUnavailable, match="price_per_hour"):
        rp.hourly("Standard_Made_Up_v9", "eastus")


def test_no_match_is_unavailable_not_zero(prices, tmp_path):
    prices.items = [i for i in d8s_v3_items() if i["retailPrice"] != 0.384]   # only Spot/Windows/reservations
    rp = RetailPrices(base_url=prices.api, cache_path=str(tmp_path / "c.json"), fallback={})
    with pytest.raises(PriceUnavailable, match="no Linux pay-as-you-go price"):
        rp.hourly("Standard_D8s_v3", "eastus")


def test_bundled_table_is_packaged_and_sane():
    table = load_fallback()
    assert len(table) >= 10 and all(0 < v < 50 for v in table.values())
    assert all(k == k.lower() for k in table)
