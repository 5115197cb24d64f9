#!/usr/bin/env python3
"""Writes the committed seed corpora for the fuzz targets (fuzz/seeds/<target>/).

Run it after changing the lists below: `python3 fuzz/seeds/generate.py`. It rewrites
uri/, metadata/ and analysis/ from scratch. The seeds are real-world shapes (every form in
pinner/src/uri.rs's test table and the metadata documents wallets meet); the fuzzers start
from them and write what they find to fuzz/corpus/, never here.
"""

import base64
import hashlib
import json
import os
import shutil
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def b58(data):
    n = int.from_bytes(data, "big")
    s = ""
    while n:
        n, r = divmod(n, 58)
        s = B58[r] + s
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + s


def b36(data):
    n = int.from_bytes(data, "big")
    s = ""
    while n:
        n, r = divmod(n, 36)
        s = B36[r] + s
    return "0" * (len(data) - len(data.lstrip(b"\0"))) + s


def b32(data):
    return base64.b32encode(data).decode().rstrip("=").lower()


def multihash(seed, code=0x12, size=None):
    if code == 0x13:
        digest = hashlib.sha512(seed.encode()).digest()
    elif code == 0x00:
        digest = seed.encode()
    else:
        digest = hashlib.sha256(seed.encode()).digest()
    if size is not None:
        digest = digest[:size]
    return varint(code) + varint(len(digest)) + digest


def v0(seed):
    return b58(multihash(seed))


def v1(seed, codec=0x70, base="b", mh=None):
    raw = varint(1) + varint(codec) + (mh or multihash(seed))
    if base == "b":
        return "b" + b32(raw)
    if base == "z":
        return "z" + b58(raw)
    if base == "f":
        return "f" + raw.hex()
    if base == "k":
        return "k" + b36(raw)
    raise ValueError(base)


V0 = v0("nifty seed v0")
V1 = v1("nifty seed v1")
RAW = v1("nifty seed raw", codec=0x55)
CBOR = v1("nifty seed cbor", codec=0x71)
V1_UPPER = "B" + V1[1:].upper()
V1_Z = v1("nifty seed z", base="z")
V1_F = v1("nifty seed f", base="f")
SHA512 = v1("nifty seed sha512", mh=multihash("nifty seed sha512", code=0x13))
IDENTITY = v1("id", codec=0x55, mh=multihash("tiny", code=0x00))
# A libp2p ed25519 key as IPNS names it: identity multihash of the protobuf-wrapped key.
_KEY = bytes([0x08, 0x01, 0x12, 0x20]) + hashlib.sha256(b"nifty ipns key").digest()
IPNS_KEY = "k" + b36(varint(1) + varint(0x72) + varint(0x00) + varint(len(_KEY)) + _KEY)
AR = "bNbA3TEQVL60xlgCcqdz4ZPHFZ711cZ3hmkpGttDt_U"
# Widely published CIDs, so a few seeds are byte-for-byte what is on chain.
PUBLISHED_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
PUBLISHED_V1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def b64(s, alphabet="std", pad=True):
    enc = base64.b64encode(s.encode()).decode()
    if alphabet == "url":
        enc = enc.replace("+", "-").replace("/", "_")
    return enc if pad else enc.rstrip("=")


SMALL_DOC = '{"name":"a","image":"ipfs://%s/1.png"}' % V1

URIS = [
    # ipfs://
    ("ipfs-v0", f"ipfs://{V0}"),
    ("ipfs-v1", f"ipfs://{V1}"),
    ("ipfs-raw", f"ipfs://{RAW}"),
    ("ipfs-dag-cbor", f"ipfs://{CBOR}"),
    ("ipfs-base58-v1", f"ipfs://{V1_Z}"),
    ("ipfs-base16-v1", f"ipfs://{V1_F}"),
    ("ipfs-sha512", f"ipfs://{SHA512}"),
    ("ipfs-identity", f"ipfs://{IDENTITY}"),
    ("ipfs-published-v0", f"ipfs://{PUBLISHED_V0}/1.json"),
    ("ipfs-published-v1", f"ipfs://{PUBLISHED_V1}/wiki/"),
    ("ipfs-v0-path", f"ipfs://{V0}/1.json"),
    ("ipfs-v1-deep-path", f"ipfs://{V1}/metadata/42"),
    ("ipfs-trailing-slash", f"ipfs://{V1}/"),
    ("ipfs-two-slashes", f"ipfs://{V1}//"),
    ("ipfs-double-slash-path", f"ipfs://{V1}//1.json"),
    ("ipfs-path-trailing", f"ipfs://{V1}/7/"),
    ("ipfs-ipfs-v0", f"ipfs://ipfs/{V0}"),
    ("ipfs-ipfs-v1-path", f"ipfs://ipfs/{V1}/3.json"),
    ("ipfs-upper-scheme", f"IPFS://{V1}/3"),
    ("ipfs-upper-ipfs", f"ipfs://IPFS/{V1}"),
    ("ipfs-upper-cid", f"ipfs://{V1_UPPER}"),
    ("ipfs-percent-path", f"ipfs://{V1}/a%20b.json"),
    ("ipfs-unicode-path", f"ipfs://{V1}/ünïcödé.json"),
    ("ipfs-query", f"ipfs://{V1}/1.json?filename=1.json"),
    ("ipfs-fragment", f"ipfs://{V1}#frag"),
    ("ipfs-spaces", f"  ipfs://{V0}/5  "),
    ("ipfs-tab-newline", f"\tipfs://{V0}\n"),
    ("ipfs-ideographic-space", f"\u3000ipfs://{V0}\u3000"),
    ("ipfs-percent-space-cid", f"ipfs://%20{V0}"),
    ("ipfs-percent-encoded-cid", "ipfs://" + "".join("%%%02X" % ord(c) for c in V0[:4]) + V0[4:]),
    ("ipfs-not-a-cid", "ipfs://notacid"),
    ("ipfs-short-cid", f"ipfs://{V0[:20]}"),
    ("ipfs-empty", "ipfs://"),
    ("ipfs-ipfs-empty", "ipfs://ipfs/"),
    ("ipfs-one-slash", f"ipfs:/{V0}"),
    ("ipfs-no-slash", f"ipfs:{V0}"),
    ("ipfs-qm-qm", f"ipfs://Qm{V0}"),
    # path gateways
    ("gw-ipfs-io", f"https://ipfs.io/ipfs/{V0}"),
    ("gw-ipfs-io-slash", f"https://ipfs.io/ipfs/{V0}/"),
    ("gw-ipfs-io-path", f"https://ipfs.io/ipfs/{V1}/12"),
    ("gw-pinata", f"https://gateway.pinata.cloud/ipfs/{V0}/meta/9.json"),
    ("gw-cloudflare-http", f"http://cloudflare-ipfs.com/ipfs/{V1}"),
    ("gw-nftstorage-query", f"https://nftstorage.link/ipfs/{RAW}?filename=x.png"),
    ("gw-port", f"https://ipfs.io:443/ipfs/{V1}/x"),
    ("gw-upper", f"HTTPS://IPFS.IO/ipfs/{V0}"),
    ("gw-encoded-slash", f"https://mygateway.example/ipfs/{V1}/a%2Fb"),
    ("gw-double-slash", f"https://ipfs.io/ipfs/{V1}//1.json"),
    ("gw-ipns", "https://ipfs.io/ipns/k51qzi5uqu5dl/1"),
    ("gw-ipns-key", f"https://dweb.link/ipns/{IPNS_KEY}/meta.json"),
    ("gw-not-a-cid", "https://example.com/ipfs/notacid/1.json"),
    ("gw-userinfo", f"https://user:pass@ipfs.io/ipfs/{V0}"),
    # subdomain gateways
    ("sub-dweb", f"https://{V1}.ipfs.dweb.link/meta.json"),
    ("sub-nftstorage", f"https://{V1}.ipfs.nftstorage.link/"),
    ("sub-upper", f"https://{V1_UPPER}.ipfs.dweb.link/x"),
    ("sub-v0", f"https://{V0}.ipfs.dweb.link/"),
    ("sub-not-a-cid", "https://notacid.ipfs.dweb.link/"),
    ("sub-ipns", "https://en.ipns.dweb.link/wiki"),
    ("sub-raw-query", f"https://{RAW}.ipfs.w3s.link/?format=car"),
    # bare CIDs and gateway paths
    ("bare-v0", V0),
    ("bare-v1", V1),
    ("bare-v0-path", f"{V0}/7.json"),
    ("bare-ipfs-path", f"/ipfs/{V0}/7"),
    ("bare-ipfs-no-slash", f"ipfs/{V1}"),
    ("bare-raw-spaces", f"  {RAW}  "),
    ("bare-ipfs-double-slash", f"/ipfs/{V0}//a"),
    # ipns
    ("ipns-key", "ipns://k51qzi5uqu5dl/3.json"),
    ("ipns-dnslink", "ipns://app.example.eth"),
    ("ipns-ipns", f"ipns://ipns/{IPNS_KEY}"),
    ("ipns-empty", "ipns://"),
    # arweave
    ("ar", f"ar://{AR}"),
    ("ar-path", f"ar://{AR}/1.json"),
    ("ar-short", "ar://short"),
    ("ar-gateway", f"https://arweave.net/{AR}"),
    # data
    ("data-b64-json", "data:application/json;base64,eyJuYW1lIjoiYSJ9"),
    ("data-b64-newline", "data:application/json;base64,eyJuYW1lIjoiYSJ9\n"),
    ("data-b64-spaces", "data:application/json;base64,eyJu YW1l IjoiYSJ9"),
    ("data-b64-utf8-param", "data:application/json;utf8;base64,eyJuYW1lIjoiYSJ9"),
    ("data-percent-json", "data:application/json,%7B%22name%22%3A%22a%22%7D"),
    ("data-raw-json", 'data:application/json;utf8,{"name":"a b"}'),
    ("data-upper-charset", "DATA:Application/JSON;charset=utf-8,{}"),
    ("data-plain", "data:,hello"),
    ("data-svg", "data:image/svg+xml;base64,PHN2Zy8+"),
    ("data-b64-unicode", "data:application/json;base64,eyJuYW1lIjoiw6kifQ"),
    ("data-b64-urlsafe", "data:application/json;base64," + b64('{"d":"???>>>"}', "url", pad=False)),
    ("data-b64-percent-pad", "data:application/json;base64," + b64('{"n":1}').replace("=", "%3D")),
    ("data-b64-doc", "data:application/json;base64," + b64(SMALL_DOC)),
    ("data-no-data", "data:application/json;base64"),
    ("data-bad-b64", "data:application/json;base64,@@@"),
    ("data-svg-utf8", 'data:image/svg+xml;utf8,<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>'),
    # web
    ("web-api", "https://api.example.org/token/1"),
    ("web-query", "http://example.com/meta/2?x=1"),
    ("web-idn", "https://例え.jp/トークン/1"),
    ("web-ip-port", "https://127.0.0.1:8080/1"),
    ("web-ipv6", "http://[::1]:5001/api/v0/cat?arg=x"),
    ("web-too-long", "https://example.com/" + "a" * 8200),
    # broken
    ("empty", ""),
    ("spaces", "   "),
    ("newline-tab", "\n\t"),
    ("typo-scheme", "htp:/broken"),
    ("ftp", "ftp://example.com/1.json"),
    ("javascript", "javascript:alert(1)"),
    ("missing-colon", "https//missing-colon.example/1"),
    ("not-a-uri", "not a uri"),
    ("https-empty", "https://"),
    ("https-space-host", "https:// space.example/"),
    ("no-scheme-name", "://nothing"),
    ("host-no-scheme", "example.com/1.json"),
    ("replacement-chars", "ipfs://\ufffd\ufffd/\ufffd"),
]


def metadata_docs():
    props_many = {"files": [{"uri": f"ipfs://{v1('many %d' % i)}/f.png"} for i in range(70)]}
    wide = {"properties": {"numbers": list(range(300))}}
    deep_bad = '{"properties":' + "[" * 200 + "]" * 200 + "}"
    deep_ok = '{"properties":' + '{"a":' * 100 + f'"ipfs://{V0}/deep.png"' + "}" * 100 + "}"
    opensea = {
        "name": "Nifty #1",
        "description": "A token.\nWith a second line.",
        "image": f"ipfs://{V0}/1.png",
        "animation_url": f"https://ipfs.io/ipfs/{V1}/1.mp4",
        "external_url": "https://example.com/token/1",
        "attributes": [
            {"trait_type": "Background", "value": "Blue"},
            {"trait_type": "Level", "value": 5, "display_type": "number"},
        ],
    }
    metaplex = {
        "name": "M",
        "image": f"https://{V1}.ipfs.nftstorage.link/0.png",
        "properties": {
            "files": [
                {"uri": f"ipfs://{RAW}/0.png", "type": "image/png"},
                {"uri": f"ipfs://{CBOR}/0.glb", "type": "model/gltf-binary"},
                {"uri": "https://example.com/0.png", "type": "image/png"},
            ],
            "category": "image",
            "creators": [{"address": "0x" + "ab" * 20, "share": 100}],
        },
    }
    return [
        ("minimal", json.dumps({"name": "a", "image": f"ipfs://{V0}"})),
        ("opensea", json.dumps(opensea, indent=2)),
        ("metaplex-properties", json.dumps(metaplex)),
        ("bom", "\ufeff" + json.dumps({"image": f"ipfs://{V1}/1.png"})),
        ("whitespace-nuls", "\n  " + json.dumps({"image": f"ipfs://{V1}"}) + "  \n\0\0\0\0"),
        ("double-encoded", json.dumps(json.dumps({"image": f"ipfs://{RAW}"}))),
        ("image-url-gateway", json.dumps({"image_url": f"https://gateway.pinata.cloud/ipfs/{V0}/1.png"})),
        ("web-only", json.dumps({"image": "https://example.com/1.png", "animation_url": "data:,x"})),
        ("arweave", json.dumps({"image": f"ar://{AR}", "image_url": f"ar://{AR}/1.png"})),
        ("inline-svg", json.dumps({"image": "data:image/svg+xml;base64,PHN2Zy8+"})),
        ("broken-assets", '{"image":"ipfs://broken","animation_url":7,"image_url":null,"properties":null}'),
        ("same-cid-everywhere", json.dumps({
            "image": f"ipfs://{V1}/a.png", "image_url": f"https://ipfs.io/ipfs/{V1}/a.png",
            "animation_url": f"ipfs://{V1}/a.png",
            "properties": {"x": f"ipfs://{V1}/a.png", "y": [f"{V1}/a.png"]},
        })),
        ("too-many-assets", json.dumps({"properties": props_many})),
        ("wide-properties", json.dumps(wide)),
        ("deep-nesting-refused", deep_bad),
        ("deep-nesting-accepted", deep_ok),
        ("escaped-keys-values", '{"\\u0069mage":"\\u0069pfs://%s","properties":{"\\ud83d\\ude00":"ipfs:\\/\\/%s"}}' % (V0, V1)),
        ("duplicate-keys", '{"image":"https://example.com/x","image":"ipfs://%s"}' % V1),
        ("nested-arrays", json.dumps({"properties": [[[f"ipfs://{V0}"]], {"a": [None, True, 1.5, f"/ipfs/{RAW}/x"]}]})),
        ("empty-object", "{}"),
        ("html-502", "<html><body>502 Bad Gateway</body></html>"),
        ("truncated", '{"name":"trunc'),
        ("utf16-bom", "\xff\xfe{}"),  # written as latin-1 below: not UTF-8
        ("top-level-array", "[1,2,3]"),
        ("top-level-string", '"text"'),
        ("null", "null"),
        ("number", "42"),
        ("string-not-json", '"{not json"'),
        ("big-numbers", '{"image":"ipfs://%s","n":1e999,"m":123456789012345678901234567890}' % V0),
        ("lone-surrogate", '{"name":"\\ud800","image":"ipfs://%s"}' % V0),
    ]


def analysis_seeds():
    docs = [
        SMALL_DOC,
        json.dumps({"image": f"ipfs://{V0}", "properties": {"files": [{"uri": f"ipfs://{RAW}"}]}}),
        "[1]",
        "not json",
    ]
    out = []
    for i, doc in enumerate(docs):
        out.append((f"data-json-b64-{i}", "data:application/json;base64," + b64(doc)))
        out.append((f"data-json-percent-{i}", "data:application/json," + urllib.parse.quote(doc)))
    out.append(("data-text-plain-doc", "data:," + urllib.parse.quote(SMALL_DOC)))
    out.append(("data-svg-brace", "data:image/svg+xml,{}"))
    out.append(("data-octet-b64", "data:application/octet-stream;base64,AAECAw=="))
    return out


def write(target, items, encoding="utf-8"):
    folder = os.path.join(HERE, target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    names = set()
    for name, text in items:
        assert name not in names, name
        names.add(name)
        enc = "latin-1" if name == "utf16-bom" else encoding
        with open(os.path.join(folder, name), "wb") as f:
            f.write(text.encode(enc))
    print(f"{target}: {len(items)} seeds")


if __name__ == "__main__":
    write("uri", URIS)
    write("metadata", metadata_docs())
    write("analysis", analysis_seeds())
