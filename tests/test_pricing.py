"""The Retail Prices client against a local server with the real response shape."""
from __future__ import annotations

import json

import pytest

from runwatch.settings import PRICE_CACHE
from runwatch.sources.pricing import (Price, PriceUnavailable, RetailPrices, canonical_sku, load_fallback,
                                      pick_price)
from support.fakes.netguard import no_network  # noqa: F401 - an autouse fixture: importing it guards every test here
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
    """The API compares $filter values case-sensitively (the double too): ask with the canonical name."""
    prices.items = [item("Standard_D8s_v3", "eastus", 0.384, product="Virtual Machines DSv3 Series")]
    rp = RetailPrices(base_url=prices.api, cache_path=str(tmp_path / "c.json"), fallback={})
    assert rp.hourly("standard_d8s_v3", "EastUS") == Price(0.384, "api", "standard_d8s_v3", "EastUS")
    assert "armSkuName eq 'Standard_D8s_v3'" in prices.queries[0]["$filter"][0]
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


CANONICAL = ["Standard_D8s_v3", "Standard_D8ds_v5", "Standard_NC24ads_A100_v4", "Standard_NC4as_T4_v3", "Standard_B2ms",
             "Standard_E96-48ads_v5", "Standard_DS2_v2", "Standard_D2_v2_Promo", "Standard_DC4as_cc_v5",
             "Standard_ND96isr_H100_v5", "Standard_NV36ads_A10_v5", "Standard_HB120rs_v3", "Standard_D4plds_v5",
             "Standard_B1ls", "Standard_M416-208s_v2", "Standard_GS5", "Basic_A1"]


@pytest.mark.parametrize("name", CANONICAL)
def test_canonical_sku_names(name):
    assert canonical_sku(name) == name
    assert canonical_sku(name.lower()) == name and canonical_sku(name.upper()) == name
    assert canonical_sku(f"  {name.lower()} ") == name


def test_the_filter_is_case_sensitive_in_the_double_too(prices):
    """What makes the test above mean something: a non-canonical name matches nothing."""
    import urllib.parse
    import urllib.request
    flt = "serviceName eq 'Virtual Machines' and armRegionName eq 'eastus' and armSkuName eq 'standard_d8s_v3'"
    with urllib.request.urlopen(f"{prices.api}?{urllib.parse.urlencode({'$filter': flt})}") as r:
        assert json.load(r)["Items"] == []


@pytest.mark.parametrize("os_type,priority,usd", [("linux", "regular", 0.384), ("windows", "regular", 0.752),
                                                   ("linux", "spot", 0.0768), ("windows", "spot", 0.15),
                                                   ("linux", "low", 0.0768)])
def test_meter_by_os_and_priority(prices, tmp_path, os_type, priority, usd):
    rp = RetailPrices(base_url=prices.api, cache_path=str(tmp_path / "c.json"), fallback={})
    got = rp.hourly("Standard_D8s_v3", "eastus", os_type=os_type, priority=priority)
    assert got.usd_per_hour == usd and got.origin == "api"
    assert pick_price(d8s_v3_items(), "Standard_D8s_v3", "eastus", os_type=os_type, priority=priority) == usd
    again = RetailPrices(base_url=prices.api, cache_path=str(tmp_path / "c.json"), fallback={})
    assert again.hourly("Standard_D8s_v3", "eastus", os_type=os_type, priority=priority) == Price(
        usd, "cache", "Standard_D8s_v3", "eastus")                # the cache keeps them apart


def test_windows_and_spot_have_no_bundled_fallback(tmp_path):
    rp = RetailPrices(base_url="http://127.0.0.1:9/none", cache_path=str(tmp_path / "c.json"), timeout=1)
    assert rp.hourly("Standard_D8s_v3", "eastus").origin == "fallback"
    with pytest.raises(PriceUnavailable, match="price_per_hour"):
        rp.hourly("Standard_D8s_v3", "eastus", os_type="windows")
    with pytest.raises(PriceUnavailable, match="price_per_hour"):
        rp.hourly("Standard_D8s_v3", "eastus", priority="spot")


@pytest.mark.parametrize("entry", ['"x"', '{"usd_per_hour": "cheap", "fetched": 0}', '{"fetched": 1e99}',
                                   '{"usd_per_hour": -1, "fetched": 1}', '[1, 2]', '{"usd_per_hour": 0.4}'])
def test_a_malformed_cache_entry_is_ignored(prices, tmp_path, entry):
    path = tmp_path / "c.json"
    path.write_text(f'{{"eastus/standard_d8s_v3": {entry}}}')
    rp = RetailPrices(base_url=prices.api, cache_path=str(path))
    assert rp.hourly("Standard_D8s_v3", "eastus") == Price(0.384, "api", "Standard_D8s_v3", "eastus")


def test_bundled_table_format():
    from importlib import resources
    table = json.loads(resources.files("runwatch").joinpath("data/azure_vm_prices.json").read_text("utf-8"))
    for region, skus in table["prices"].items():
        assert region == region.lower() and " " not in region
        for sku, usd in skus.items():
            assert canonical_sku(sku) == sku, sku                   # what the API's armSkuName says
            assert isinstance(usd, float) and round(usd, 4) == usd
    assert table["prices"]["eastus"]["Standard_D4ds_v5"] == 0.226
    assert table["prices"]["eastus"]["Standard_D8ds_v5"] == 0.452


def test_the_cache_follows_the_data_directory(prices, tmp_path, monkeypatch):
    # the data directory's rule (settings.data_dir): the command's --data-dir / the config's
    # data_dir, else RUNWATCH_DATA_DIR, else the default; the cache is written there
    monkeypatch.setenv("RUNWATCH_DATA_DIR", str(tmp_path / "from-env"))
    given = tmp_path / "given"
    rp = RetailPrices(base_url=prices.api, directory=str(given))
    assert rp.hourly("Standard_D8s_v3", "eastus").origin == "api"
    assert json.loads((given / PRICE_CACHE).read_text())["eastus/standard_d8s_v3"]["usd_per_hour"] == 0.384
    assert not (tmp_path / "from-env").exists()
    assert RetailPrices(base_url=prices.api).cache_path == str(tmp_path / "from-env" / PRICE_CACHE)


def test_cloud_pollers_cache_prices_in_serve_s_data_directory(tmp_path):
    pytest.importorskip("azure.mgmt.compute")
    from types import SimpleNamespace

    from runwatch.model.runs import Registry, RunSpec
    from runwatch.sources.azure_vm import AzureVMConfig
    from runwatch.sources.poller import cloud_pollers
    registry = Registry()
    run = registry.add(RunSpec(id="vm-run", source="azure_vm"))
    rc = SimpleNamespace(cloud={"azure_vm": AzureVMConfig("sub", "rg", "vm1")})
    (poller,) = cloud_pollers(registry, [(run, rc, None)], str(tmp_path / "dd"))
    assert poller.source.prices.cache_path == str(tmp_path / "dd" / PRICE_CACHE)
