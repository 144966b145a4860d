"""`runwatch cancel RUN_ID`: ask the runwatch that launched a run to stop it."""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request


def cmd_cancel(args) -> int:
    if args.token_file and not args.token:
        from ..settings import given_token
        try:
            args.token = given_token(None, args.token_file)[0]
        except ValueError as e:
            print(f"runwatch cancel: {e}", file=sys.stderr)
            return 2
    if not args.token:
        print("runwatch cancel: no token; set RUNWATCH_TOKEN or give --token-file (runwatch printed the token, "
              "or the path of its api-token file, at start)", file=sys.stderr)
        return 2
    if urllib.parse.urlsplit(args.url).scheme not in ("http", "https"):
        print(f"runwatch cancel: --url {args.url!r} is not an http(s) URL", file=sys.stderr)
        return 2
    url = args.url.rstrip("/") + "/api/runs/" + urllib.parse.quote(args.run_id, safe="") + "/cancel"
    req = urllib.request.Request(url, data=b"", method="POST",  # noqa: S310 - scheme checked above
                                 headers={"Authorization": f"Bearer {args.token}"})
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:     # noqa: S310 - scheme checked above
            body = json.loads(resp.read() or b"{}")
            print(f"runwatch cancel: {args.run_id}: {body.get('message', 'canceling')}")
            return 0
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read()).get("error") or e.reason
        except ValueError:
            reason = e.reason
        print(f"runwatch cancel: {args.run_id}: HTTP {e.code}: {reason}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"runwatch cancel: cannot reach runwatch at {args.url}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
