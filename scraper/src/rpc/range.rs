//! Adaptive `eth_getLogs` ranges: what a failed log query says about the range, and the
//! span the next query asks for. Pure, so every provider's words are a table test.

use super::transport::RpcFault;

/// What to do after a log query failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    /// The range was too large: ask again for `[from, to]` with this `to` when the node
    /// said which range works, else for a smaller span.
    Shrink(Option<u64>),
    /// A passing failure: wait and ask the same range again.
    Retry,
    /// Asking again will not help.
    Fail,
}

/// Words providers use to refuse a range as too large or too heavy.
const TOO_LARGE: &[&str] = &[
    "query returned more than",
    "more than 10000 results",
    "too many results",
    "block range is too wide",
    "block range too large",
    "block range is too large",
    "range too large",
    "exceed maximum block range",
    "exceeds max block range",
    "exceeds the range allowed",
    "limited to a",
    "response is too big",
    "response size exceeded",
    "response size should not",
    "log response size exceeded",
    "response size is larger",
    "query timeout exceeded",
];

/// Reads a failed `eth_getLogs` of `[from, to]`.
pub fn advise(fault: &RpcFault, from: u64, to: u64) -> Advice {
    match fault {
        // A JSON-RPC refusal sent with an HTTP error status (Alchemy answers 400) is read
        // for its words first.
        RpcFault::Http {
            rpc: Some(e),
            status,
            ..
        } => match advise_rpc(e, from, to) {
            Advice::Fail if *status == 408 || *status == 429 || *status >= 500 => Advice::Retry,
            other => other,
        },
        // 413: the request or its answer is too large; 503 and 504: gateways that give up
        // on heavy queries. All: a smaller range (a 503 also waits a little).
        RpcFault::Http {
            status: 413 | 503 | 504,
            ..
        } => Advice::Shrink(None),
        // An answer over the source's bound: fewer blocks hold fewer logs.
        RpcFault::TooLarge(_) => Advice::Shrink(None),
        // A query that outlived the client's timeout was too heavy for the node.
        RpcFault::Transport { timeout: true, .. } => Advice::Shrink(None),
        RpcFault::Rpc(e) => advise_rpc(e, from, to),
        other if other.is_retryable() => Advice::Retry,
        _ => Advice::Fail,
    }
}

fn advise_rpc(e: &ethers_providers::JsonRpcError, from: u64, to: u64) -> Advice {
    let m = e.message.to_ascii_lowercase();
    if let Some((a, b)) = suggested_range(&e.message)
        && b >= a
    {
        // The node names a range that works from our start: take its end. One with another
        // start still tells the span it accepts.
        let span = b - a;
        let end = if a == from {
            b
        } else {
            from.saturating_add(span)
        };
        return Advice::Shrink(Some(end.min(to)));
    }
    if TOO_LARGE.iter().any(|n| m.contains(n)) || TIMED_OUT.iter().any(|n| m.contains(n)) {
        return Advice::Shrink(limit(&m).map(|n| from.saturating_add(n - 1).min(to)));
    }
    // Rate limits (Infura sends them as -32005 too) wait; they say nothing of the range.
    if super::transport::is_transient_rpc(e) {
        return Advice::Retry;
    }
    if e.code == -32005 {
        return Advice::Shrink(None);
    }
    Advice::Fail
}

/// Words of a node that gave up on a heavy query.
const TIMED_OUT: [&str; 4] = [
    "request timed out",
    "context deadline exceeded",
    "execution timeout",
    "query timeout",
];

fn hex_number(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    u64::from_str_radix(digits, 16).ok()
}

/// `[0xA, 0xB]` in a message (Alchemy's "this block range should work", Infura's "Try with
/// this block range").
pub fn suggested_range(message: &str) -> Option<(u64, u64)> {
    let open = message.find("[0x").or_else(|| message.find("[0X"))?;
    let rest = &message[open + 1..];
    let close = rest.find(']')?;
    let (a, b) = rest[..close].split_once(',')?;
    Some((hex_number(a)?, hex_number(b)?))
}

/// A block-count limit named in a message: "limited to a 10,000 range", "up to a 2K block
/// range", "maximum block range of 5000", "max block range 1000".
pub fn limit(message: &str) -> Option<u64> {
    const AFTER: [&str; 6] = [
        "limited to a ",
        "up to a ",
        "maximum block range of ",
        "maximum block range: ",
        "max block range ",
        "max range of ",
    ];
    let m = message.to_ascii_lowercase();
    AFTER.iter().find_map(|p| {
        let start = m.find(p)? + p.len();
        let word: String = m[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == ',' || *c == '_')
            .filter(|c| *c != ',' && *c != '_')
            .collect();
        let (digits, mult) = match word.strip_suffix('k') {
            Some(d) => (d, 1000),
            None => (word.as_str(), 1),
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .filter(|n| *n > 0)
    })
}

/// The span of the next log query: shrinks on a refusal, grows back (doubling, up to `max`)
/// after successes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    current: u64,
    max: u64,
    successes: u32,
}

/// Successes in a row before the span doubles.
const GROW_AFTER: u32 = 2;

impl Span {
    /// Starting at `start` blocks, never above `max` (both at least 1).
    pub fn new(start: u64, max: u64) -> Self {
        let max = max.max(1);
        Span {
            current: start.clamp(1, max),
            max,
            successes: 0,
        }
    }

    /// The blocks the next query asks for.
    pub fn blocks(&self) -> u64 {
        self.current
    }

    /// The last block of the next query from `from`, within `end`.
    pub fn end_from(&self, from: u64, end: u64) -> u64 {
        from.saturating_add(self.current - 1).min(end)
    }

    /// A query succeeded.
    pub fn success(&mut self) {
        self.successes += 1;
        if self.successes >= GROW_AFTER {
            self.current = self.current.saturating_mul(2).min(self.max);
            self.successes = 0;
        }
    }

    /// `[from, to]` was refused; `to_hint` is the end the node suggested. Returns false when
    /// the span was one block already (nothing smaller to ask).
    pub fn shrink(&mut self, from: u64, to: u64, to_hint: Option<u64>) -> bool {
        self.successes = 0;
        let asked = to - from + 1;
        let next = match to_hint {
            Some(t) if t >= from && t < to => t - from + 1,
            _ => asked / 2,
        };
        let next = next.max(1);
        let shrank = next < asked;
        self.current = next.min(self.current).max(1);
        shrank
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use ethers_providers::JsonRpcError;

    fn rpc(code: i64, message: &str) -> RpcFault {
        RpcFault::Rpc(JsonRpcError {
            code,
            message: message.into(),
            data: None,
        })
    }

    fn http(status: u16) -> RpcFault {
        RpcFault::Http {
            status,
            retry_after: None,
            snippet: String::new(),
            rpc: None,
        }
    }

    #[test]
    fn providers_words_become_advice() {
        let (from, to) = (0x100, 0x100 + 9999);
        let cases: Vec<(RpcFault, Advice)> = vec![
            (
                rpc(-32005, "query returned more than 10000 results"),
                Advice::Shrink(None),
            ),
            (
                rpc(
                    -32602,
                    "Log response size exceeded. You can make eth_getLogs requests with up to \
                     a 2K block range and no limit on the response size, or you can request \
                     any block range with a cap of 10K logs in the response. Based on your \
                     parameters, this block range should work: [0x100, 0x4ff]",
                ),
                Advice::Shrink(Some(0x4ff)),
            ),
            (
                rpc(
                    -32005,
                    "query returned more than 10000 results. Try with this block range \
                     [0x200, 0x2ff].",
                ),
                // Another start: its span (256 blocks) from ours.
                Advice::Shrink(Some(0x100 + 255)),
            ),
            (rpc(-32000, "block range is too wide"), Advice::Shrink(None)),
            (
                rpc(-32000, "eth_getLogs is limited to a 1,000 range"),
                Advice::Shrink(Some(0x100 + 999)),
            ),
            (
                rpc(-32000, "eth_getLogs is limited to a 2K range"),
                Advice::Shrink(Some(0x100 + 1999)),
            ),
            (rpc(-32000, "response is too big"), Advice::Shrink(None)),
            (
                rpc(-32000, "query exceeds max block range 5000"),
                Advice::Shrink(Some(0x100 + 4999)),
            ),
            (http(413), Advice::Shrink(None)),
            (http(503), Advice::Shrink(None)),
            (http(504), Advice::Shrink(None)),
            (
                RpcFault::Http {
                    status: 400,
                    retry_after: None,
                    snippet: String::new(),
                    rpc: Some(JsonRpcError {
                        code: -32600,
                        message: "this block range should work: [0x100, 0x1ff]".into(),
                        data: None,
                    }),
                },
                Advice::Shrink(Some(0x1ff)),
            ),
            (
                RpcFault::Http {
                    status: 400,
                    retry_after: None,
                    snippet: String::new(),
                    rpc: Some(JsonRpcError {
                        code: -32600,
                        message: "Response size is larger than 150MB limit".into(),
                        data: None,
                    }),
                },
                Advice::Shrink(None),
            ),
            (
                rpc(-32005, "daily request count exceeded, request rate limited"),
                Advice::Retry,
            ),
            (rpc(-32002, "request timed out"), Advice::Shrink(None)),
            (
                rpc(-32000, "context deadline exceeded"),
                Advice::Shrink(None),
            ),
            (http(502), Advice::Retry),
            (http(429), Advice::Retry),
            (rpc(-32603, "internal error"), Advice::Retry),
            (rpc(-32000, "header not found"), Advice::Retry),
            (
                RpcFault::Transport {
                    timeout: true,
                    message: "timed out".into(),
                },
                Advice::Shrink(None),
            ),
            (
                RpcFault::Transport {
                    timeout: false,
                    message: "connection refused".into(),
                },
                Advice::Retry,
            ),
            (RpcFault::Decode("eof".into()), Advice::Retry),
            (http(401), Advice::Fail),
            (
                rpc(-32601, "the method eth_getLogs does not exist"),
                Advice::Fail,
            ),
            (rpc(-32602, "invalid argument 0: hex string"), Advice::Fail),
        ];
        for (fault, want) in cases {
            assert_eq!(advise(&fault, from, to), want, "{fault}");
        }
        // A suggestion past what was asked is held to it.
        assert_eq!(
            advise(
                &rpc(-32602, "this block range should work: [0x100, 0xffff]"),
                0x100,
                0x1ff
            ),
            Advice::Shrink(Some(0x1ff))
        );
    }

    #[test]
    fn limits_and_ranges_parse_in_their_many_spellings() {
        assert_eq!(suggested_range("ok: [0x1, 0xA]"), Some((1, 10)));
        assert_eq!(suggested_range("[0x1,0x2"), None);
        assert_eq!(suggested_range("[0xzz, 0x2]"), None);
        assert_eq!(limit("limited to a 10,000 range"), Some(10_000));
        assert_eq!(limit("up to a 2K block range"), Some(2000));
        assert_eq!(limit("maximum block range of 500"), Some(500));
        assert_eq!(limit("limited to a lot"), None);
        assert_eq!(limit("limited to a 0 range"), None);
        assert_eq!(limit("limited to a 99999999999999999999k range"), None);
        // A suggestion spanning every block does not overflow.
        assert_eq!(
            advise(
                &rpc(
                    -32602,
                    "this block range should work: [0x0, 0xffffffffffffffff]"
                ),
                0,
                9
            ),
            Advice::Shrink(Some(9))
        );
    }

    #[test]
    fn the_span_halves_or_takes_the_hint_then_grows_back_to_its_cap() {
        let mut s = Span::new(1000, 4000);
        assert_eq!(s.end_from(10, 100_000), 1009);
        assert_eq!(s.end_from(10, 500), 500);
        assert!(s.shrink(10, 1009, None));
        assert_eq!(s.blocks(), 500);
        assert!(s.shrink(10, 509, Some(109)));
        assert_eq!(s.blocks(), 100);
        s.success();
        assert_eq!(s.blocks(), 100);
        s.success();
        assert_eq!(s.blocks(), 200);
        for _ in 0..20 {
            s.success();
        }
        assert_eq!(s.blocks(), 4000);
        // One block cannot shrink further.
        let mut one = Span::new(1, 10);
        assert!(!one.shrink(7, 7, None));
        assert_eq!(one.blocks(), 1);
        // A hint outside the range asked is no hint.
        let mut s = Span::new(100, 100);
        assert!(s.shrink(0, 99, Some(500)));
        assert_eq!(s.blocks(), 50);
    }
}
