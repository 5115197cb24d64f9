"""make bench-peers: subgrounds fetches every token of a subgraph at one block.

The documented way: load the subgraph, build a field path with `first` and the `block`
argument, and call `query_df` with its default pagination strategy. Writes one JSON array
per row to --out ([id, tokenID, contract id, tokenURI, blockNumber], values as subgrounds
returned them) and prints one JSON line: the version, the seconds from creating the client to
holding every row, and the error if the client raised one. Exits 0 whatever subgrounds did, so
the bench can report it; non-zero only for a mistake of this script's own.
"""

import argparse
import json
import sys
import time
from importlib.metadata import version

FIELDS = ["id", "tokenID", "contract_id", "tokenURI", "blockNumber"]


def cell(value):
    """A value as text, without changing what the client made of it: an int stays exact, a
    float shows as the float it became."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--block", type=int, required=True)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    report = {"client": "subgrounds", "version": version("subgrounds")}
    rows = 0
    with open(args.out, "w", encoding="utf-8") as out:
        try:
            from subgrounds import Subgrounds

            started = time.perf_counter()
            sg = Subgrounds()
            subgraph = sg.load_subgraph(args.url)
            tokens = subgraph.Query.tokens(
                first=args.first, block={"number": args.block}
            )
            df = sg.query_df(
                [
                    tokens.id,
                    tokens.tokenID,
                    tokens.contract.id,
                    tokens.tokenURI,
                    tokens.blockNumber,
                ]
            )
            report["seconds"] = time.perf_counter() - started
            columns = [f"tokens_{name}" for name in FIELDS]
            if len(df) > 0:
                missing = [c for c in columns if c not in df.columns]
                if missing:
                    raise KeyError(f"query_df gave no column {missing}: {list(df.columns)}")
                for values in df[columns].itertuples(index=False, name=None):
                    out.write(json.dumps([cell(v) for v in values]) + "\n")
                    rows += 1
        except Exception as e:  # the bench reports whatever the client raised
            first_line = (str(e).strip().splitlines() or [""])[0]
            report["error"] = f"{type(e).__name__}: {first_line}"[:500]
    report["rows"] = rows
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
