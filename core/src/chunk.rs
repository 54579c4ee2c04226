//! Splitting `len` rows into `parts` contiguous, balanced chunks.
//!
//! Every backend (worker processes, rayon threads, serial) uses these same
//! ranges, so their results can be compared like with like.

use std::ops::Range;

/// The rows of chunk `index` when `len` rows are split into `parts` chunks.
///
/// Chunks are contiguous, disjoint, in order, and cover `0..len` exactly
/// once; their lengths differ by at most one (the first `len % parts`
/// chunks get the extra row). When `parts > len` the last chunks are empty.
/// Returns an empty range when `parts == 0` or `index >= parts`.
///
/// # Examples
/// ```
/// use shmpar_core::chunk::chunk_range;
/// assert_eq!(chunk_range(10, 3, 0), 0..4);
/// assert_eq!(chunk_range(10, 3, 1), 4..7);
/// assert_eq!(chunk_range(10, 3, 2), 7..10);
/// ```
pub fn chunk_range(len: usize, parts: usize, index: usize) -> Range<usize> {
    if parts == 0 || index >= parts {
        return 0..0;
    }
    let base = len / parts;
    let extra = len % parts;
    let start = index * base + index.min(extra);
    let end = start + base + usize::from(index < extra);
    start..end
}

/// All `parts` chunk ranges of `len` rows, in order.
pub fn chunk_ranges(len: usize, parts: usize) -> impl ExactSizeIterator<Item = Range<usize>> {
    (0..parts).map(move |i| chunk_range(len, parts, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn chunks_cover_every_row_once_and_balance(len in 0usize..10_000, parts in 1usize..70) {
            let ranges: Vec<_> = chunk_ranges(len, parts).collect();
            prop_assert_eq!(ranges.len(), parts);
            let mut next = 0;
            for r in &ranges {
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end >= r.start);
                next = r.end;
            }
            prop_assert_eq!(next, len);
            let min = ranges.iter().map(|r| r.len()).min().unwrap();
            let max = ranges.iter().map(|r| r.len()).max().unwrap();
            prop_assert!(max - min <= 1);
        }
    }

    #[test]
    fn degenerate_requests_give_empty_ranges() {
        assert_eq!(chunk_range(5, 0, 0), 0..0);
        assert_eq!(chunk_range(5, 2, 2), 0..0);
        assert_eq!(
            chunk_ranges(2, 4).map(|r| r.len()).collect::<Vec<_>>(),
            vec![1, 1, 0, 0]
        );
    }
}
