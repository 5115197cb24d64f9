//! The pure heart of cursor paging: merge a page's two halves, check their order, and work
//! out the next cursor; split backfill ranges. No I/O here, so every rule is a table test.

use nifty_state::Position;

use crate::error::ScrapeError;

/// What paging needs of a row: its place in `(blockNumber, id)` order.
pub trait Ordered {
    /// The row's block number.
    fn block(&self) -> u64;
    /// The row's subgraph id, compared as bytes.
    fn id(&self) -> &str;
}

/// A page merged and checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Merged<R> {
    /// Rows to commit, in cursor order.
    pub rows: Vec<R>,
    /// The cursor after committing `rows`.
    pub position: Position,
    /// True when nothing after `position` remains up to `end`: this was the last page.
    pub done: bool,
}

/// Merges `rest` (the cursor's block, `id > cursor.id`, by id) and `next` (blocks after the
/// cursor's, up to `end`, by block then id), each asked with `first = page_size`.
///
/// When `rest` is full, more of the cursor's block may follow it, so only `rest` is taken.
/// Otherwise the cursor's block is finished and `rest ++ next` is a prefix of everything
/// after the cursor. Rows out of order or out of range fail the page: committing them
/// could move the cursor past tokens never seen.
pub fn merge<R: Ordered>(
    cursor: &Position,
    end: u64,
    page_size: usize,
    rest: Vec<R>,
    next: Vec<R>,
) -> Result<Merged<R>, ScrapeError> {
    let violation = |detail: String| ScrapeError::OrderViolation {
        cursor: cursor.clone(),
        detail,
    };
    if rest.len() > page_size || next.len() > page_size {
        return Err(violation(format!(
            "asked for {page_size} rows, got {} + {}",
            rest.len(),
            next.len()
        )));
    }
    let mut prev: Option<(u64, &str)> = None;
    for r in &rest {
        if r.block() != cursor.block {
            return Err(violation(format!(
                "rest row {:?} is in block {}",
                r.id(),
                r.block()
            )));
        }
        if r.id() <= cursor.id.as_str() {
            return Err(violation(format!(
                "rest row {:?} is not after the cursor id",
                r.id()
            )));
        }
        if let Some(p) = prev
            && (r.block(), r.id()) <= p
        {
            return Err(violation(format!(
                "rest row {:?} follows {:?} out of order",
                r.id(),
                p.1
            )));
        }
        prev = Some((r.block(), r.id()));
    }
    let mut prev_next: Option<(u64, &str)> = None;
    for r in &next {
        if r.block() <= cursor.block || r.block() > end {
            return Err(violation(format!(
                "next row {:?} is in block {}, outside ({}, {end}]",
                r.id(),
                r.block(),
                cursor.block
            )));
        }
        if let Some(p) = prev_next
            && (r.block(), r.id()) <= p
        {
            return Err(violation(format!(
                "next row {:?} (block {}) follows {:?} (block {}) out of order",
                r.id(),
                r.block(),
                p.1,
                p.0
            )));
        }
        prev_next = Some((r.block(), r.id()));
    }
    let rest_full = rest.len() == page_size && page_size > 0;
    let next_full = next.len() == page_size && page_size > 0;
    let mut rows = rest;
    if !rest_full {
        rows.extend(next);
    }
    let done = !rest_full && !next_full;
    let position = match rows.last() {
        Some(r) => Position {
            block: r.block(),
            id: r.id().to_owned(),
        },
        None => cursor.clone(),
    };
    Ok(Merged {
        rows,
        position,
        done,
    })
}

/// The cursor once everything up to `end` is committed: the start of the block after it.
/// Never behind `position`.
pub fn finished(position: &Position, end: u64) -> Position {
    let done = Position::start_of(end.saturating_add(1));
    if *position > done {
        position.clone()
    } else {
        done
    }
}

/// True when a cursor has covered everything up to `end`.
pub fn is_finished(position: &Position, end: u64) -> bool {
    position.block > end
}

/// Splits `[from, to]` into at most `parts` contiguous ranges of near-equal block counts.
pub fn partition(from: u64, to: u64, parts: usize) -> Vec<(u64, u64)> {
    if from > to || parts == 0 {
        return vec![];
    }
    let blocks = to - from + 1;
    let parts = (parts as u64).min(blocks);
    let base = blocks / parts;
    let extra = blocks % parts;
    let mut out = Vec::with_capacity(parts as usize);
    let mut start = from;
    for i in 0..parts {
        let len = base + u64::from(i < extra);
        out.push((start, start + len - 1));
        start += len;
    }
    out
}

/// Work stealing: given a partition's cursor and end, where to split what it has left.
/// Returns `(victim_new_end, thief_start)` with the victim keeping the first half, or
/// `None` when fewer than `min_blocks` blocks remain (not worth a second worker).
///
/// The victim keeps its cursor's block whole: it may be part-way through it.
pub fn split(position: &Position, end: u64, min_blocks: u64) -> Option<(u64, u64)> {
    let first_free = if position.id.is_empty() {
        position.block
    } else {
        position.block + 1
    };
    if first_free > end {
        return None;
    }
    let left = end - first_free + 1;
    if left < min_blocks.max(2) {
        return None;
    }
    let mid = first_free + left / 2 - 1;
    Some((mid, mid + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq, Clone)]
    struct R(u64, &'static str);
    impl Ordered for R {
        fn block(&self) -> u64 {
            self.0
        }
        fn id(&self) -> &str {
            self.1
        }
    }

    fn p(block: u64, id: &str) -> Position {
        Position {
            block,
            id: id.to_owned(),
        }
    }

    #[test]
    fn merge_takes_rest_alone_when_full_and_both_halves_otherwise() {
        // (cursor, end, page size, rest, next, want rows, want position, want done)
        type Case = (Position, u64, usize, Vec<R>, Vec<R>, Vec<R>, Position, bool);
        let cases: Vec<Case> = vec![
            // Empty: nothing after the cursor; position unchanged, done.
            (p(5, ""), 100, 3, vec![], vec![], vec![], p(5, ""), true),
            // Rest full: the block may hold more; next is not used yet.
            (
                p(5, ""),
                100,
                2,
                vec![R(5, "a"), R(5, "b")],
                vec![R(6, "a")],
                vec![R(5, "a"), R(5, "b")],
                p(5, "b"),
                false,
            ),
            // Rest short, next short: both taken, done.
            (
                p(5, "a"),
                100,
                3,
                vec![R(5, "b")],
                vec![R(7, "a"), R(9, "z")],
                vec![R(5, "b"), R(7, "a"), R(9, "z")],
                p(9, "z"),
                true,
            ),
            // Rest short, next full: both taken, more to come.
            (
                p(5, "a"),
                100,
                2,
                vec![R(5, "b")],
                vec![R(7, "a"), R(7, "b")],
                vec![R(5, "b"), R(7, "a"), R(7, "b")],
                p(7, "b"),
                false,
            ),
            // Rest empty, next full, ids in a later block sort lower than earlier ones.
            (
                p(5, "m"),
                100,
                2,
                vec![],
                vec![R(6, "0x00_1"), R(6, "0x00_2")],
                vec![R(6, "0x00_1"), R(6, "0x00_2")],
                p(6, "0x00_2"),
                false,
            ),
            // Ids compare as bytes: "..._10" sorts before "..._9".
            (
                p(5, ""),
                100,
                3,
                vec![R(5, "0x01_10"), R(5, "0x01_9")],
                vec![],
                vec![R(5, "0x01_10"), R(5, "0x01_9")],
                p(5, "0x01_9"),
                true,
            ),
        ];
        for (i, (cursor, end, n, rest, next, rows, pos, done)) in cases.into_iter().enumerate() {
            let m = merge(&cursor, end, n, rest, next).unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(
                m,
                Merged {
                    rows,
                    position: pos,
                    done
                },
                "case {i}"
            );
        }
    }

    #[test]
    fn merge_refuses_rows_that_could_lose_tokens() {
        type Case = (Position, Vec<R>, Vec<R>, &'static str);
        let cases: Vec<Case> = vec![
            (
                p(5, ""),
                vec![R(4, "a")],
                vec![],
                "rest row \"a\" is in block 4",
            ),
            (
                p(5, "c"),
                vec![R(5, "b")],
                vec![],
                "not after the cursor id",
            ),
            (
                p(5, "c"),
                vec![R(5, "c")],
                vec![],
                "not after the cursor id",
            ),
            (p(5, ""), vec![R(5, "b"), R(5, "a")], vec![], "out of order"),
            (p(5, ""), vec![R(5, "b"), R(5, "b")], vec![], "out of order"),
            (p(5, ""), vec![], vec![R(5, "a")], "outside (5, 100]"),
            (p(5, ""), vec![], vec![R(101, "a")], "outside (5, 100]"),
            (p(5, ""), vec![], vec![R(7, "a"), R(6, "z")], "out of order"),
            (p(5, ""), vec![], vec![R(7, "b"), R(7, "a")], "out of order"),
            (
                p(5, ""),
                vec![R(5, "a"), R(5, "b"), R(5, "c"), R(5, "d")],
                vec![],
                "asked for 3 rows",
            ),
        ];
        for (cursor, rest, next, want) in cases {
            let err = merge(&cursor, 100, 3, rest.clone(), next.clone())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{rest:?} {next:?}: {err}");
        }
    }

    #[test]
    fn finishing_moves_to_the_block_after_end_and_never_back() {
        assert_eq!(finished(&p(5, "x"), 10), p(11, ""));
        assert_eq!(finished(&p(11, ""), 10), p(11, ""));
        assert_eq!(finished(&p(12, "a"), 10), p(12, "a"));
        assert!(is_finished(&p(11, ""), 10));
        assert!(!is_finished(&p(10, "zz"), 10));
    }

    #[test]
    fn partitions_cover_the_range_exactly() {
        let cases: &[(u64, u64, usize, &[(u64, u64)])] = &[
            (0, 9, 2, &[(0, 4), (5, 9)]),
            (0, 10, 3, &[(0, 3), (4, 7), (8, 10)]),
            (5, 6, 4, &[(5, 5), (6, 6)]),
            (7, 7, 1, &[(7, 7)]),
            (8, 7, 2, &[]),
            (0, u64::MAX - 1, 1, &[(0, u64::MAX - 1)]),
        ];
        for (from, to, n, want) in cases {
            assert_eq!(
                partition(*from, *to, *n),
                want.to_vec(),
                "{from}..={to} in {n}"
            );
        }
    }

    #[test]
    fn split_gives_the_thief_the_second_half_of_what_is_left() {
        let cases: &[(Position, u64, Option<(u64, u64)>)] = &[
            (p(0, ""), 99, Some((49, 50))),
            (p(10, "x"), 20, Some((15, 16))), // block 10 is in progress: 11..=20 is free
            (p(10, ""), 11, Some((10, 11))),
            (p(10, "x"), 11, None), // only block 11 left
            (p(12, ""), 11, None),  // finished
            (p(0, ""), 5, None),    // below min_blocks = 8
        ];
        for (pos, end, want) in cases {
            let min = if *end == 5 { 8 } else { 2 };
            assert_eq!(split(pos, *end, min), *want, "{pos} end {end}");
        }
    }
}
