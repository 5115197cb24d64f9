#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets graph, config and rpc (fuzz/seeds/<target>/).

    python3 fuzz/seeds/capture.py [NIFTY_BINARY]

graph: real page responses of a `nifty devnet` (started here, on loopback) at several
cursors, each after its `BLOCK ID END FIRST` header line, plus error bodies a subgraph or a
gateway sends. config: what `nifty config init` writes, the tests' daemon config, and
variants with every source kind, backend and key-bearing URL. rpc: eth_getLogs answers and
ABI-encoded answers built here. The binary defaults to target/debug/nifty (`make build`).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NIFTY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "nifty")
SECRET = "fuzzkey0123456789abcdef"  # fuzz_targets/graph.rs's stand-in for the API key


def write(target, items):
    folder = os.path.join(HERE, target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name, data in items:
        if isinstance(data, str):
            data = data.encode("utf-8")
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


def graph_seeds():
    query = open(os.path.join(ROOT, "scraper", "graphql", "page.graphql")).read()
    dev = subprocess.Popen(
        [NIFTY, "devnet", "--tokens", "3000", "--seed", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        info = json.loads(dev.stdout.readline())
        url = info["subgraph"]

        def post(body):
            req = urllib.request.Request(
                url, json.dumps(body).encode(), {"content-type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.read()

        meta = json.loads(post({"query": "{ _meta { block { number } } }"}))
        head = meta["data"]["_meta"]["block"]["number"]
        snapshot = head - 20
        out = []

        def page(name, block, last_id, end, first):
            variables = {
                "block": str(block),
                "lastId": last_id,
                "end": str(end),
                "first": first,
                "snapshot": snapshot,
            }
            body = post({"query": query, "variables": variables})
            header = f"{block} {last_id or '-'} {end} {first}\n"
            out.append((name, header.encode() + body))
            return json.loads(body)

        first = page("start-first-4", 0, "", snapshot, 4)
        rows = first["data"]["next"]
        last = rows[-1]
        page("after-a-row", int(last["blockNumber"]), last["id"], snapshot, 4)
        # A busy block: pages within the block by id.
        busy = page("busy-block-full-rest", 0, "", snapshot, 3)["data"]["next"][0]
        page("within-a-block", int(busy["blockNumber"]), busy["id"], snapshot, 2)
        page("one-row", 0, "", snapshot, 1)
        page("lane-end-early", 0, "", int(last["blockNumber"]), 8)
        page("past-the-head", snapshot + 1, "", snapshot, 5)
        mid = page("mid-chain", snapshot // 2, "", snapshot, 6)
        if mid["data"]["next"]:
            r = mid["data"]["next"][0]
            # The same rows asked from a later cursor: out of order for it.
            out.append(
                ("rows-before-the-cursor", f"{snapshot} - {snapshot} 6\n".encode() + json.dumps(mid).encode())
            )
            swapped = dict(mid)
            swapped["data"] = {"rest": [], "next": list(reversed(mid["data"]["next"]))}
            out.append(("reversed", f"{snapshot // 2} - {snapshot} 6\n".encode() + json.dumps(swapped).encode()))
    finally:
        dev.kill()
        dev.wait()

    errors = [
        ("timeout", {"errors": [{"message": "Query timed out"}]}),
        ("overloaded", {"errors": [{"message": "service is overloaded, try again later"}], "data": None}),
        ("indexing-error", {"errors": [{"message": "indexing_error"}]}),
        (
            "pruned",
            {"errors": [{"message": "subgraph QmX only has data starting at block number 500 and data for block number 100 is therefore not available"}]},
        ),
        ("reorg", {"errors": [{"message": "chain was reorganized", "locations": [{"line": 1, "column": 2}], "path": ["rest", 0]}]}),
        ("key-in-message", {"errors": [{"message": f"invalid key {SECRET} for /api/{SECRET}/subgraphs"}]}),
        ("partial-data", {"data": {"rest": [], "next": None}, "errors": [{"message": "Store error: x"}]}),
        ("neither", {}),
        ("empty-halves", {"data": {"rest": [], "next": []}}),
    ]
    for name, body in errors:
        out.append((name, b"0 - 100 10\n" + json.dumps(body).encode()))
    out.append(("html-502", b"0 - 100 10\n<html><body>502 Bad Gateway</body></html>"))
    out.append(("truncated", b"0 - 100 10\n" + json.dumps(first).encode()[:300]))
    out.append(("key-in-wrong-type", b"0 - 100 10\n" + json.dumps({"data": {"rest": SECRET, "next": []}}).encode()))
    out.append(("no-header", json.dumps(first).encode()))
    return out


def config_seeds():
    tmp = tempfile.mkdtemp()
    try:
        path = os.path.join(tmp, "nifty.toml")
        subprocess.run([NIFTY, "config", "init", "--path", path], check=True, stdout=subprocess.DEVNULL)
        template = open(path).read()
    finally:
        shutil.rmtree(tmp)
    # The template with its example sources switched on.
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and ("=" in line or line.startswith("# [sources")) else line
        for line in template.splitlines()
    )
    tests_daemon = """
data_dir = "/tmp/x/data"
[store]
sync_commits = false
[http]
listen = "127.0.0.1:0"
admin_token_env = "NIFTY_TEST_ADMIN_TOKEN"
[pinner]
retry_base_secs = 0
[jobs.analyse]
schedule = "* * * * * *"
budget_secs = 5
[jobs.pin]
schedule = "* * * * * *"
budget_secs = 5
[jobs.follow]
schedule = "*/2 * * * * *"
budget_secs = 5
[gateway]
url = "http://127.0.0.1:36463"
arweave_url = "http://127.0.0.1:36463/ar"
timeout_ms = 1500
allow_hosts = ["127.0.0.1"]
[cluster]
url = "http://127.0.0.1:34437"
timeout_ms = 2000
attempts = 2
[sources.dev]
kind = "graph"
url = "http://127.0.0.1:34645/subgraphs/name/nifty/erc721"
confirmations = 5
schedule = "* * * * * *"
budget_secs = 5
"""
    keyed = """
[sources.mainnet]
kind = "graph"
url = "https://gateway.thegraph.com/api/@KEY@/subgraphs/id/QmX"
api_key_env = "GRAPH_KEY"
[sources.palm]
kind = "rpc"
url = "https://user:@KEY@@palm.example/v3/@KEY@?key=@KEY@#@KEY@"
contracts = ["0x00000000000000000000000000000000000000aa"]
multicall = ""
batch_size = 1
[cluster]
api = "psa"
url = "https://api.pinata.cloud/psa?token=@KEY@"
auth = "bearer"
token_env = "PINATA_TOKEN"
[gateway]
url = "https://gw.example/api/@KEY@/ipfs"
arweave_url = "https://ar.example/api/@KEY@"
"""
    basic = """
data_dir = "d"
log_format = "json"
[cluster]
auth = "basic"
user = "admin"
password_env = "CLUSTER_PW"
replication_min = -1
replication_max = 3
[store]
min_free_mb = 0
cache_mb = 1
"""
    bad = [
        ("bad-page-size", '[sources.a]\nkind = "graph"\nurl = "http://h/api/@KEY@"\npage_size = 5000\n'),
        ("bad-url", '[sources.a]\nkind = "graph"\nurl = "ftp://user:@KEY@@h/api/@KEY@"\n'),
        ("bad-type", "[store]\ncache_mb = \"big\"\n"),
        ("unknown-key", "[http]\nlisten = \"127.0.0.1:1\"\nlisten2 = 1\n"),
        ("bad-cron", '[jobs.pin]\nschedule = "61 * * * * *"\n'),
        ("backslash-url", '[sources.a]\nkind = "graph"\nurl = "http://h\\\\api\\\\@KEY@/x"\n'),
        ("missing-secret", '[sources.a]\nkind = "graph"\nurl = "http://h/"\napi_key_env = "NIFTY_UNSET"\n'),
    ]
    return [
        ("template", template),
        ("template-uncommented", uncommented),
        ("tests-daemon", tests_daemon),
        ("keyed-urls", keyed),
        ("basic-auth", basic),
        ("empty", ""),
    ] + bad


def rpc_seeds():
    transfer = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    zero = "0x" + "00" * 32

    def word(n):
        return n.to_bytes(32, "big")

    def topic_addr(b):
        return "0x" + "00" * 12 + f"{b:02x}" * 20

    def log(contract, block, token, topics=None, removed=False):
        return {
            "address": "0x" + f"{contract:02x}" * 20,
            "topics": topics or [transfer, zero, topic_addr(0xB0), "0x" + token.to_bytes(32, "big").hex()],
            "data": "0x",
            "blockNumber": hex(block),
            "blockHash": "0x" + f"{block % 256:02x}" * 32,
            "transactionHash": "0x" + "11" * 32,
            "transactionIndex": "0x0",
            "logIndex": "0x0",
            "removed": removed,
        }

    logs = [
        log(0xAA, 10, 1),
        log(0xAA, 10, 2),
        log(0xAA, 11, 1),  # the same token again: only its first mint counts
        log(0xBB, 12, 2**256 - 1),
        log(0xCC, 12, 5, topics=[transfer, zero, topic_addr(0xB1)]),  # ERC-20: 3 topics
        log(0xCC, 13, 6, topics=[transfer, topic_addr(0xB2), topic_addr(0xB1), zero]),  # not a mint
        log(0xDD, 13, 7, removed=True),
    ]
    no_block = dict(log(0xEE, 14, 1))
    del no_block["blockNumber"]

    def abi_bytes(b):
        padded = b + b"\0" * (-len(b) % 32)
        return word(32) + word(len(b)) + padded

    def aggregate(results):
        head = word(32) + word(len(results))
        offsets, tails = b"", b""
        base = 32 * len(results)
        for ok, data in results:
            offsets += word(base + len(tails))
            padded = data + b"\0" * (-len(data) % 32)
            tails += word(1 if ok else 0) + word(64) + word(len(data)) + padded
        return head + offsets + tails

    uri = abi_bytes(b"ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/1")
    return [
        ("logs", b"l10 14\n" + json.dumps(logs).encode()),
        ("logs-out-of-range", b"l0 11\n" + json.dumps(logs).encode()),
        ("logs-no-block", b"l0 100\n" + json.dumps([no_block]).encode()),
        ("logs-empty", b"l0 0\n[]"),
        ("string-uri", b"s" + uri),
        ("string-empty", b"s" + abi_bytes(b"")),
        ("string-bytes32", b"s" + b"PUNK" + b"\0" * 28),
        ("string-bad-utf8", b"s" + abi_bytes(b"f\xffo")),
        ("string-lying-offset", b"s" + word(0x1000) + word(5)),
        ("string-huge-length", b"s" + word(32) + word(2**64 - 1)),
        ("bool-true", b"b" + word(1)),
        ("bool-two", b"b" + word(2)),
        ("aggregate-two", b"a\x02" + aggregate([(True, uri), (False, b"")])),
        ("aggregate-count-off", b"a\x03" + aggregate([(True, b"\x01\x02")])),
        ("aggregate-huge-count", b"a\x01" + word(32) + word(2**62)),
    ]


def main():
    write("graph", graph_seeds())
    write("config", config_seeds())
    write("rpc", rpc_seeds())


if __name__ == "__main__":
    main()
