//! The devnet's query engine: filters, ordering and paging over a [`Chain`], as graph-node
//! answers them. Pure functions of the chain and the query; the GraphQL layer only
//! translates arguments into these types.
//!
//! Token queries start from whichever pre-sorted index matches the order (tokens by
//! (block, id), or `by_id`), narrowed by binary search to the block and id bounds of the
//! filter's top-level conjunction, so the pager's two queries never scan.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::Range;

use primitive_types::U256;

use super::chain::{Chain, MintedToken};

/// graph-node's cap on `first`.
pub const FIRST_MAX: i64 = 1_000;
/// graph-node's cap on `skip`.
pub const SKIP_MAX: i64 = 5_000;

/// A comparison of a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `field`.
    Eq,
    /// `field_not`.
    Not,
    /// `field_gt`.
    Gt,
    /// `field_gte`.
    Gte,
    /// `field_lt`.
    Lt,
    /// `field_lte`.
    Lte,
    /// `field_in`.
    In,
    /// `field_not_in`.
    NotIn,
}

/// The right-hand side of a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operand {
    /// A string, ID or Bytes value, compared bytewise.
    Text(String),
    /// A list of those.
    Texts(Vec<String>),
    /// A BigInt, compared numerically.
    Num(U256),
    /// A list of those.
    Nums(Vec<U256>),
    /// A boolean.
    Bool(bool),
}

/// A field's value as the filter sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scalar<'a> {
    /// A string, ID or hex value.
    Text(Cow<'a, str>),
    /// A BigInt.
    Num(U256),
    /// A boolean.
    Bool(bool),
    /// Null: matches no condition.
    Null,
}

/// A `where` argument: conditions on fields of type `F`, combined with `and` and `or`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter<F> {
    /// All must hold (the fields of one filter object, and `and`).
    And(Vec<Filter<F>>),
    /// One must hold (`or`).
    Or(Vec<Filter<F>>),
    /// One comparison.
    Cond(F, Op, Operand),
}

impl<F: Copy> Filter<F> {
    /// The filter that everything passes.
    pub fn all() -> Self {
        Filter::And(Vec::new())
    }

    /// Whether the entity whose fields `value` reads passes.
    pub fn matches<'a>(&self, value: &impl Fn(F) -> Scalar<'a>) -> bool {
        match self {
            Filter::And(parts) => parts.iter().all(|p| p.matches(value)),
            Filter::Or(parts) => parts.iter().any(|p| p.matches(value)),
            Filter::Cond(field, op, operand) => holds(*op, &value(*field), operand),
        }
    }

    /// The comparisons that must all hold: the top-level conjunction, through nested `and`.
    fn conjuncts(&self, out: &mut Vec<(F, Op, Operand)>) {
        match self {
            Filter::And(parts) => parts.iter().for_each(|p| p.conjuncts(out)),
            Filter::Or(_) => {}
            Filter::Cond(f, op, operand) => out.push((*f, *op, operand.clone())),
        }
    }
}

/// Whether `value op operand` holds.
fn holds(op: Op, value: &Scalar<'_>, operand: &Operand) -> bool {
    match (value, operand) {
        (Scalar::Text(a), Operand::Text(b)) => compare(op, a.as_bytes().cmp(b.as_bytes())),
        (Scalar::Text(a), Operand::Texts(list)) => membership(op, list.iter().any(|b| **a == **b)),
        (Scalar::Num(a), Operand::Num(b)) => compare(op, a.cmp(b)),
        (Scalar::Num(a), Operand::Nums(list)) => membership(op, list.contains(a)),
        (Scalar::Bool(a), Operand::Bool(b)) => compare(op, a.cmp(b)),
        _ => false,
    }
}

/// A comparison operator applied to an ordering.
fn compare(op: Op, ord: Ordering) -> bool {
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Not => ord != Ordering::Equal,
        Op::Gt => ord == Ordering::Greater,
        Op::Gte => ord != Ordering::Less,
        Op::Lt => ord == Ordering::Less,
        Op::Lte => ord != Ordering::Greater,
        Op::In | Op::NotIn => false,
    }
}

/// `_in` / `_not_in` applied to whether the value is in the list.
fn membership(op: Op, found: bool) -> bool {
    match op {
        Op::In => found,
        Op::NotIn => !found,
        _ => false,
    }
}

/// Sort direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    /// Smallest first.
    #[default]
    Asc,
    /// Largest first (ties still by id ascending).
    Desc,
}

/// The Token fields that filter and order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TokenField {
    /// `id`.
    #[default]
    Id,
    /// `contract` (its id).
    Contract,
    /// `tokenID`.
    TokenId,
    /// `owner` (its id, as of the snapshot).
    Owner,
    /// `mintTime`.
    MintTime,
    /// `tokenURI`.
    TokenUri,
    /// `blockNumber`.
    BlockNumber,
    /// `blockHash`.
    BlockHash,
}

/// A `tokens` query.
#[derive(Clone, Debug)]
pub struct TokenQuery<'a> {
    /// How many rows to return.
    pub first: usize,
    /// How many matching rows to pass over first.
    pub skip: usize,
    /// Sort field; ties are broken by id ascending.
    pub order_by: TokenField,
    /// Sort direction.
    pub direction: Direction,
    /// The `where` argument.
    pub filter: Filter<TokenField>,
    /// The snapshot block.
    pub block: u64,
    /// Restricts the query to these token indexes (an owner's tokens), when set.
    pub within: Option<&'a [u32]>,
}

/// Checks `first` and `skip` against graph-node's caps, with its messages.
pub fn check_paging(first: i64, skip: i64) -> Result<(usize, usize), String> {
    if !(0..=FIRST_MAX).contains(&first) {
        return Err(format!(
            "The `first` argument must be between 0 and {FIRST_MAX}, but is {first}"
        ));
    }
    if !(0..=SKIP_MAX).contains(&skip) {
        return Err(format!(
            "The `skip` argument must be between 0 and {SKIP_MAX}, but is {skip}"
        ));
    }
    Ok((first as usize, skip as usize))
}

/// A token's field as of `block`.
pub fn token_value<'c>(
    chain: &'c Chain,
    t: &'c MintedToken,
    block: u64,
    field: TokenField,
) -> Scalar<'c> {
    match field {
        TokenField::Id => Scalar::Text(Cow::Borrowed(&t.graph_id)),
        TokenField::Contract => Scalar::Text(Cow::Borrowed(
            &chain.contracts()[usize::from(t.contract)].id,
        )),
        TokenField::TokenId => Scalar::Num(t.key.token_id.0),
        TokenField::Owner => Scalar::Text(Cow::Borrowed(
            &chain.owners()[t.owner_at(block) as usize].id,
        )),
        TokenField::MintTime => Scalar::Num(U256::from(chain.block_timestamp(t.block))),
        TokenField::TokenUri => Scalar::Text(Cow::Owned(chain.token_uri(t))),
        TokenField::BlockNumber => Scalar::Num(U256::from(t.block)),
        TokenField::BlockHash => Scalar::Text(Cow::Owned(hex0x(&chain.block_hash(t.block)))),
    }
}

/// `0x` and lowercase hex.
pub fn hex0x(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Block and id bounds implied by a filter's top-level conjunction.
struct Bounds {
    /// Lowest block that can match.
    block_lo: u64,
    /// Highest block that can match.
    block_hi: u64,
    /// Lower bounds on the id: (value, inclusive).
    id_lo: Vec<(String, bool)>,
    /// Upper bounds on the id: (value, inclusive).
    id_hi: Vec<(String, bool)>,
}

impl Bounds {
    /// Reads the bounds off `filter`, for a snapshot at `block`.
    fn of(filter: &Filter<TokenField>, block: u64) -> Bounds {
        let mut b = Bounds {
            block_lo: 0,
            block_hi: block,
            id_lo: Vec::new(),
            id_hi: Vec::new(),
        };
        let mut conds = Vec::new();
        filter.conjuncts(&mut conds);
        for (field, op, operand) in conds {
            match (field, operand) {
                (TokenField::BlockNumber, Operand::Num(n)) => b.narrow_blocks(op, n),
                (TokenField::Id, Operand::Text(s)) => match op {
                    Op::Eq => {
                        b.id_lo.push((s.clone(), true));
                        b.id_hi.push((s, true));
                    }
                    Op::Gt => b.id_lo.push((s, false)),
                    Op::Gte => b.id_lo.push((s, true)),
                    Op::Lt => b.id_hi.push((s, false)),
                    Op::Lte => b.id_hi.push((s, true)),
                    _ => {}
                },
                // Every id of contract C starts with `C_`, and `` ` `` follows `_`.
                (TokenField::Contract, Operand::Text(s)) if op == Op::Eq => {
                    b.id_lo.push((format!("{s}_"), true));
                    b.id_hi.push((format!("{s}`"), false));
                }
                _ => {}
            }
        }
        b
    }

    /// Applies `blockNumber op n` (a superset is fine: every row is filtered again).
    fn narrow_blocks(&mut self, op: Op, n: U256) {
        let big = n > U256::from(u64::MAX);
        let v = n.low_u64();
        match op {
            Op::Eq | Op::Gte | Op::Gt if big => self.block_lo = u64::MAX,
            Op::Eq => {
                self.block_lo = self.block_lo.max(v);
                self.block_hi = self.block_hi.min(v);
            }
            Op::Gt => self.block_lo = self.block_lo.max(v.saturating_add(1)),
            Op::Gte => self.block_lo = self.block_lo.max(v),
            Op::Lt | Op::Lte if big => {}
            Op::Lt if v == 0 => self.block_lo = u64::MAX,
            Op::Lt => self.block_hi = self.block_hi.min(v - 1),
            Op::Lte => self.block_hi = self.block_hi.min(v),
            Op::Not | Op::In | Op::NotIn => {}
        }
    }

    /// Positions in `chain.tokens()` of the blocks in bounds.
    fn block_range(&self, chain: &Chain) -> Range<usize> {
        let tokens = chain.tokens();
        if self.block_lo > self.block_hi || self.block_lo == u64::MAX {
            return 0..0;
        }
        let start = tokens.partition_point(|t| t.block < self.block_lo);
        let end = tokens.partition_point(|t| t.block <= self.block_hi);
        start..end.max(start)
    }

    /// Narrows a range of positions whose ids ascend, given the id of a position.
    fn narrow_ids<'c>(
        &self,
        range: Range<usize>,
        id_at: impl Fn(usize) -> &'c str,
    ) -> Range<usize> {
        let (mut start, mut end) = (range.start, range.end);
        let find = |start: usize, end: usize, pred: &dyn Fn(&str) -> bool| {
            let (mut lo, mut hi) = (start, end);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if pred(id_at(mid)) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        for (s, inclusive) in &self.id_lo {
            let s = s.as_str();
            let p = if *inclusive {
                find(start, end, &|id| id < s)
            } else {
                find(start, end, &|id| id <= s)
            };
            start = start.max(p);
        }
        for (s, inclusive) in &self.id_hi {
            let s = s.as_str();
            let p = if *inclusive {
                find(start, end, &|id| id <= s)
            } else {
                find(start, end, &|id| id < s)
            };
            end = end.min(p);
        }
        start..end.max(start)
    }
}

/// Runs a token query: indexes into [`Chain::tokens`], in order.
pub fn select_tokens(chain: &Chain, q: &TokenQuery<'_>) -> Vec<u32> {
    let tokens = chain.tokens();
    let block = q.block;
    let bounds = Bounds::of(&q.filter, block);
    let passes = |i: usize| {
        let t = &tokens[i];
        t.block <= block && q.filter.matches(&|f| token_value(chain, t, block, f))
    };
    let page = |iter: &mut dyn Iterator<Item = usize>| -> Vec<u32> {
        iter.filter(|&i| passes(i))
            .skip(q.skip)
            .take(q.first)
            .map(|i| i as u32)
            .collect()
    };
    if q.first == 0 {
        return Vec::new();
    }

    if let Some(within) = q.within {
        let rows: Vec<usize> = within.iter().map(|&i| i as usize).collect();
        return sorted_page(chain, q, rows, &passes);
    }

    let range = bounds.block_range(chain);
    let single_block =
        !range.is_empty() && tokens[range.start].block == tokens[range.end - 1].block;
    match q.order_by {
        TokenField::BlockNumber | TokenField::MintTime => {
            let range = if single_block {
                bounds.narrow_ids(range, |p| &tokens[p].graph_id)
            } else {
                range
            };
            match q.direction {
                Direction::Asc => page(&mut range.into_iter()),
                Direction::Desc => page(&mut BlocksDescending::new(chain, range)),
            }
        }
        TokenField::Id if single_block => {
            let range = bounds.narrow_ids(range, |p| &tokens[p].graph_id);
            match q.direction {
                Direction::Asc => page(&mut range.into_iter()),
                Direction::Desc => page(&mut range.rev()),
            }
        }
        TokenField::Id => {
            let by_id = chain.by_id();
            let ids = bounds.narrow_ids(0..by_id.len(), |p| &tokens[by_id[p] as usize].graph_id);
            let slice = &by_id[ids];
            match q.direction {
                Direction::Asc => page(&mut slice.iter().map(|&i| i as usize)),
                Direction::Desc => page(&mut slice.iter().rev().map(|&i| i as usize)),
            }
        }
        _ => sorted_page(chain, q, range.collect(), &passes),
    }
}

/// Filters, sorts by the query's field (ties by id ascending) and pages arbitrary rows.
fn sorted_page(
    chain: &Chain,
    q: &TokenQuery<'_>,
    rows: Vec<usize>,
    passes: &dyn Fn(usize) -> bool,
) -> Vec<u32> {
    let tokens = chain.tokens();
    let mut keyed: Vec<(Scalar<'_>, usize)> = rows
        .into_iter()
        .filter(|&i| passes(i))
        .map(|i| (token_value(chain, &tokens[i], q.block, q.order_by), i))
        .collect();
    keyed.sort_unstable_by(|(ka, a), (kb, b)| {
        let by_key = order_scalars(ka, kb);
        let by_key = match q.direction {
            Direction::Asc => by_key,
            Direction::Desc => by_key.reverse(),
        };
        by_key.then_with(|| tokens[*a].graph_id.cmp(&tokens[*b].graph_id))
    });
    keyed
        .into_iter()
        .skip(q.skip)
        .take(q.first)
        .map(|(_, i)| i as u32)
        .collect()
}

/// Total order of field values: nulls first, then by value.
pub fn order_scalars(a: &Scalar<'_>, b: &Scalar<'_>) -> Ordering {
    match (a, b) {
        (Scalar::Text(x), Scalar::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Scalar::Num(x), Scalar::Num(y)) => x.cmp(y),
        (Scalar::Bool(x), Scalar::Bool(y)) => x.cmp(y),
        (Scalar::Null, Scalar::Null) => Ordering::Equal,
        (Scalar::Null, _) => Ordering::Less,
        (_, Scalar::Null) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Positions of a range of `chain.tokens()`, blocks newest first, each block by id
/// ascending (graph-node's tie-break).
struct BlocksDescending<'c> {
    /// The tokens.
    tokens: &'c [MintedToken],
    /// Start of the whole range.
    floor: usize,
    /// What is left of the current block.
    current: Range<usize>,
    /// Start of the current block: the end of the next one.
    lower: usize,
}

impl<'c> BlocksDescending<'c> {
    /// Walks `range` of `chain.tokens()`.
    fn new(chain: &'c Chain, range: Range<usize>) -> Self {
        BlocksDescending {
            tokens: chain.tokens(),
            floor: range.start,
            current: range.end..range.end,
            lower: range.end,
        }
    }
}

impl Iterator for BlocksDescending<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if let Some(p) = self.current.next() {
            return Some(p);
        }
        if self.lower <= self.floor {
            return None;
        }
        let end = self.lower;
        let block = self.tokens[end - 1].block;
        let start = self.floor + self.tokens[self.floor..end].partition_point(|t| t.block < block);
        self.current = start + 1..end;
        self.lower = start;
        Some(start)
    }
}

/// The TokenContract fields that filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContractField {
    /// `id`.
    Id,
    /// `name`.
    Name,
    /// `symbol`.
    Symbol,
    /// `supportsEIP721Metadata`.
    SupportsMetadata,
}

/// The Owner fields that filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerField {
    /// `id`.
    Id,
}

/// The All fields that filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllField {
    /// `id`.
    Id,
}

/// Sorts entities by a key (ties by id ascending) and pages them. `key` gives a row's sort
/// value and id.
pub fn page_entities<T>(
    rows: Vec<T>,
    key: impl Fn(&T) -> (Scalar<'static>, String),
    direction: Direction,
    skip: usize,
    first: usize,
) -> Vec<T> {
    let mut keyed: Vec<((Scalar<'static>, String), T)> =
        rows.into_iter().map(|r| (key(&r), r)).collect();
    keyed.sort_by(|((ka, ida), _), ((kb, idb), _)| {
        let by_key = order_scalars(ka, kb);
        let by_key = match direction {
            Direction::Asc => by_key,
            Direction::Desc => by_key.reverse(),
        };
        by_key.then_with(|| ida.cmp(idb))
    });
    keyed
        .into_iter()
        .skip(skip)
        .take(first)
        .map(|(_, r)| r)
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::devnet::chain::{ChainParams, generate};

    /// The obvious, slow answer: filter everything, sort, page.
    fn reference(chain: &Chain, q: &TokenQuery<'_>) -> Vec<u32> {
        let rows: Vec<usize> = match q.within {
            Some(w) => w.iter().map(|&i| i as usize).collect(),
            None => (0..chain.tokens().len()).collect(),
        };
        let tokens = chain.tokens();
        let mut keep: Vec<usize> = rows
            .into_iter()
            .filter(|&i| {
                let t = &tokens[i];
                t.block <= q.block && q.filter.matches(&|f| token_value(chain, t, q.block, f))
            })
            .collect();
        keep.sort_by(|&a, &b| {
            let ka = token_value(chain, &tokens[a], q.block, q.order_by);
            let kb = token_value(chain, &tokens[b], q.block, q.order_by);
            let by_key = order_scalars(&ka, &kb);
            let by_key = if q.direction == Direction::Desc {
                by_key.reverse()
            } else {
                by_key
            };
            by_key.then_with(|| tokens[a].graph_id.cmp(&tokens[b].graph_id))
        });
        keep.into_iter()
            .skip(q.skip)
            .take(q.first)
            .map(|i| i as u32)
            .collect()
    }

    fn num(n: u64) -> Operand {
        Operand::Num(U256::from(n))
    }

    fn query(filter: Filter<TokenField>, order_by: TokenField, block: u64) -> TokenQuery<'static> {
        TokenQuery {
            first: 1000,
            skip: 0,
            order_by,
            direction: Direction::Asc,
            filter,
            block,
            within: None,
        }
    }

    #[test]
    fn the_pagers_two_queries_match_the_reference() {
        let chain = generate(&ChainParams {
            tokens: 25_000,
            seed: 4,
            head_tail: 30,
            web_base: None,
        });
        let snapshot = chain.head() - 20;
        let tokens = chain.tokens();
        // Walk the whole chain by cursor, as the client does, with a small page.
        let first = 700;
        let (mut block, mut last) = (0u64, String::new());
        let mut seen = Vec::new();
        loop {
            let rest = TokenQuery {
                first,
                ..query(
                    Filter::And(vec![
                        Filter::Cond(TokenField::BlockNumber, Op::Eq, num(block)),
                        Filter::Cond(TokenField::Id, Op::Gt, Operand::Text(last.clone())),
                    ]),
                    TokenField::Id,
                    snapshot,
                )
            };
            let next = TokenQuery {
                first,
                ..query(
                    Filter::And(vec![
                        Filter::Cond(TokenField::BlockNumber, Op::Gt, num(block)),
                        Filter::Cond(TokenField::BlockNumber, Op::Lte, num(snapshot)),
                    ]),
                    TokenField::BlockNumber,
                    snapshot,
                )
            };
            let (r, n) = (select_tokens(&chain, &rest), select_tokens(&chain, &next));
            assert_eq!(r, reference(&chain, &rest));
            assert_eq!(n, reference(&chain, &next));
            let page: Vec<u32> = r.into_iter().chain(n).take(first).collect();
            if page.is_empty() {
                break;
            }
            let t = &tokens[*page.last().unwrap() as usize];
            (block, last) = (t.block, t.graph_id.to_string());
            seen.extend(page);
        }
        let want: Vec<u32> = (0..chain.count_at(snapshot) as u32).collect();
        assert_eq!(seen, want);
    }

    fn random_filter(rng: &mut StdRng, chain: &Chain, depth: u32) -> Filter<TokenField> {
        let tokens = chain.tokens();
        let t = &tokens[rng.gen_range(0..tokens.len())];
        let ops = [Op::Eq, Op::Not, Op::Gt, Op::Gte, Op::Lt, Op::Lte];
        let op = ops[rng.gen_range(0..ops.len())];
        match rng.gen_range(0..if depth > 0 { 9 } else { 7 }) {
            0 => Filter::Cond(TokenField::BlockNumber, op, num(t.block)),
            1 => Filter::Cond(TokenField::Id, op, Operand::Text(t.graph_id.to_string())),
            2 => Filter::Cond(
                TokenField::Contract,
                if rng.gen_bool(0.5) { Op::Eq } else { op },
                Operand::Text(chain.contracts()[usize::from(t.contract)].id.clone()),
            ),
            3 => Filter::Cond(TokenField::TokenId, op, Operand::Num(t.key.token_id.0)),
            4 => Filter::Cond(
                TokenField::BlockNumber,
                if rng.gen_bool(0.5) { Op::In } else { Op::NotIn },
                Operand::Nums(vec![U256::from(t.block), U256::from(t.block + 1)]),
            ),
            5 => Filter::Cond(
                TokenField::Owner,
                Op::Eq,
                Operand::Text(chain.owners()[t.owner as usize].id.clone()),
            ),
            6 => Filter::Cond(
                TokenField::MintTime,
                op,
                num(chain.block_timestamp(t.block)),
            ),
            7 => Filter::And(
                (0..rng.gen_range(1..3))
                    .map(|_| random_filter(rng, chain, depth - 1))
                    .collect(),
            ),
            _ => Filter::Or(
                (0..rng.gen_range(1..3))
                    .map(|_| random_filter(rng, chain, depth - 1))
                    .collect(),
            ),
        }
    }

    #[test]
    fn random_queries_match_the_reference() {
        let mut chain = generate(&ChainParams {
            tokens: 4_000,
            seed: 9,
            head_tail: 30,
            web_base: None,
        });
        chain.mine(5, 50);
        let mut rng = StdRng::seed_from_u64(11);
        let fields = [
            TokenField::Id,
            TokenField::Contract,
            TokenField::TokenId,
            TokenField::Owner,
            TokenField::MintTime,
            TokenField::TokenUri,
            TokenField::BlockNumber,
            TokenField::BlockHash,
        ];
        let (lo, hi) = (chain.tokens()[0].block - 2, chain.head());
        for round in 0..600 {
            let parts = (0..rng.gen_range(0..4))
                .map(|_| random_filter(&mut rng, &chain, 2))
                .collect();
            let owner = rng.gen_range(1..chain.owners().len());
            let q = TokenQuery {
                first: rng.gen_range(0..300),
                skip: if rng.gen_bool(0.3) {
                    rng.gen_range(0..200)
                } else {
                    0
                },
                order_by: fields[rng.gen_range(0..fields.len())],
                direction: if rng.gen_bool(0.5) {
                    Direction::Asc
                } else {
                    Direction::Desc
                },
                filter: Filter::And(parts),
                block: rng.gen_range(lo..=hi),
                within: rng
                    .gen_bool(0.1)
                    .then(|| chain.owners()[owner].tokens.as_slice()),
            };
            assert_eq!(
                select_tokens(&chain, &q),
                reference(&chain, &q),
                "round {round}: {q:?}"
            );
        }
    }

    #[test]
    fn descending_blocks_break_ties_by_id_ascending() {
        let chain = generate(&ChainParams {
            tokens: 2_000,
            seed: 1,
            head_tail: 30,
            web_base: None,
        });
        let q = TokenQuery {
            direction: Direction::Desc,
            ..query(Filter::all(), TokenField::BlockNumber, chain.head())
        };
        let rows = select_tokens(&chain, &q);
        assert_eq!(rows.len(), 1000);
        let tokens = chain.tokens();
        for w in rows.windows(2) {
            let (a, b) = (&tokens[w[0] as usize], &tokens[w[1] as usize]);
            assert!(a.block > b.block || (a.block == b.block && a.graph_id < b.graph_id));
        }
    }

    #[test]
    fn paging_caps_answer_graph_nodes_messages() {
        assert_eq!(check_paging(1000, 5000), Ok((1000, 5000)));
        assert_eq!(
            check_paging(2000, 0),
            Err("The `first` argument must be between 0 and 1000, but is 2000".to_owned())
        );
        assert_eq!(
            check_paging(-1, 0),
            Err("The `first` argument must be between 0 and 1000, but is -1".to_owned())
        );
        assert_eq!(
            check_paging(10, 6000),
            Err("The `skip` argument must be between 0 and 5000, but is 6000".to_owned())
        );
    }

    #[test]
    fn filters_compare_numbers_numerically_and_text_bytewise() {
        let cases = [
            (
                Scalar::Num(U256::from(10)),
                Op::Gt,
                Operand::Num(U256::from(9)),
                true,
            ),
            (
                Scalar::Text("10".into()),
                Op::Gt,
                Operand::Text("9".into()),
                false,
            ),
            (
                Scalar::Num(U256::MAX),
                Op::Gte,
                Operand::Num(U256::MAX),
                true,
            ),
            (
                Scalar::Text("0xab_1".into()),
                Op::Lt,
                Operand::Text("0xab_10".into()),
                true,
            ),
            (
                Scalar::Text("a".into()),
                Op::In,
                Operand::Texts(vec!["b".into(), "a".into()]),
                true,
            ),
            (
                Scalar::Text("a".into()),
                Op::NotIn,
                Operand::Texts(vec!["a".into()]),
                false,
            ),
            (
                Scalar::Num(U256::one()),
                Op::NotIn,
                Operand::Nums(vec![U256::zero()]),
                true,
            ),
            (Scalar::Null, Op::Not, Operand::Text("x".into()), false),
            (Scalar::Bool(true), Op::Not, Operand::Bool(false), true),
        ];
        for (value, op, operand, want) in cases {
            assert_eq!(
                holds(op, &value, &operand),
                want,
                "{value:?} {op:?} {operand:?}"
            );
        }
    }
}
