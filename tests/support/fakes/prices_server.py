"""A local Azure Retail Prices API (GET /api/retail/prices?$filter=…), no auth.

Answers with the real response shape: BillingCurrency, CustomerEntityId,
CustomerEntityType, Items (retail price items), NextPageLink (absolute URL of
the next page, or null), Count. Like the service since api-version
2023-01-01-preview, `$filter` is applied and its values are compared
case-sensitively (`armSkuName eq 'standard_d8s_v3'` matches nothing); only
`field eq 'value'` clauses joined by `and` are understood, anything else is
answered 400 as the service answers a filter it cannot parse. The matching
items of `items` are served `page_size` per page through `$skip`;
`down` makes it answer HTTP 503; every query string is recorded in `queries`.
"""
from __future__ import annotations

import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def item(sku: str, region: str, price: float, *, sku_name: str | None = None, product: str | None = None,
         type_: str = "Consumption", unit: str = "1 Hour", reservation_term: str | None = None) -> dict:
    """One retail price item as the API returns it."""
    size = sku.replace("Standard_", "").replace("_", " ")
    d = {
        "currencyCode": "USD", "tierMinimumUnits": 0.0, "retailPrice": price, "unitPrice": price,
        "armRegionName": region, "location": {"eastus": "US East", "westeurope": "EU West"}.get(region, region),
        "effectiveStartDate": "2024-06-01T00:00:00Z", "meterId": "d3d0a6bc-0000-0000-0000-000000000000",
        "meterName": sku_name or size, "productId": "DZH318Z0BQ4L", "skuId": "DZH318Z0BQ4L/00JX",
        "productName": product or f"Virtual Machines {size.split()[0][:2]} Series",
        "skuName": sku_name or size, "serviceName": "Virtual Machines", "serviceId": "DZH313Z7MMC8",
        "serviceFamily": "Compute", "unitOfMeasure": unit, "type": type_, "isPrimaryMeterRegion": True,
        "armSkuName": sku,
    }
    if reservation_term:
        d["reservationTerm"] = reservation_term
    return d


def d8s_v3_items(region: str = "eastus") -> list[dict]:
    """What the API lists for Standard_D8s_v3 in a region: Linux, Windows, Spot, Low Priority, reservations."""
    return [
        item("Standard_D8s_v3", region, 0.0768, sku_name="D8s v3 Spot", product="Virtual Machines DSv3 Series"),
        item("Standard_D8s_v3", region, 0.752, sku_name="D8s v3", product="Virtual Machines DSv3 Series Windows"),
        item("Standard_D8s_v3", region, 0.0768, sku_name="D8s v3 Low Priority",
             product="Virtual Machines DSv3 Series"),
        item("Standard_D8s_v3", region, 2018.0, sku_name="D8s v3", product="Virtual Machines DSv3 Series",
             type_="Reservation", unit="1 Hour", reservation_term="1 Year"),
        item("Standard_D8s_v3", region, 0.15, sku_name="D8s v3 Spot", product="Virtual Machines DSv3 Series Windows"),
        item("Standard_D8s_v3", region, 0.384, sku_name="D8s v3", product="Virtual Machines DSv3 Series"),
    ]


_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+'([^']*)'\s*$")
#: $filter field -> item key (the filter says priceType, the item says type)
_FIELD = {"priceType": "type"}


def apply_filter(items: list[dict], flt: str | None) -> list[dict] | None:
    """The items a `$filter` selects, compared as the service does (case-sensitive); None: unparsable."""
    if not flt:
        return list(items)
    clauses = []
    for part in flt.split(" and "):
        m = _CLAUSE.match(part)
        if not m:
            return None
        clauses.append((_FIELD.get(m.group(1), m.group(1)), m.group(2)))
    return [i for i in items if all(str(i.get(k)) == v for k, v in clauses)]


class FakePrices:
    def __init__(self, items: list[dict] | None = None, page_size: int = 2):
        self.items = list(items if items is not None else d8s_v3_items())
        self.page_size = page_size
        self.down = False
        self.queries: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                fake.queries.append(q)
                selected = apply_filter(fake.items, q.get("$filter", [None])[0])
                if fake.down:
                    body = b'{"error":"unavailable"}'
                    self.send_response(503)
                elif selected is None:
                    body = json.dumps({"Error": {"Code": "InvalidFilter",
                                                 "Message": "The $filter expression is not valid."}}).encode()
                    self.send_response(400)
                else:
                    skip = int(q.get("$skip", ["0"])[0])
                    page = selected[skip:skip + fake.page_size]
                    nxt = None
                    if skip + fake.page_size < len(selected):
                        nq = {k: v[0] for k, v in q.items()}
                        nq["$skip"] = str(skip + fake.page_size)
                        nxt = f"{fake.url}{u.path}?{urllib.parse.urlencode(nq)}"
                    body = json.dumps({"BillingCurrency": "USD", "CustomerEntityId": "Default",
                                       "CustomerEntityType": "Retail", "Items": page,
                                       "NextPageLink": nxt, "Count": len(page)}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.api = f"{self.url}/api/retail/prices"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()  # stop() within 20 ms, not the default 0.5 s

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
