//! Exact top-k by inner product over row-major item factors.
//!
//! Scores are computed four items at a time ([`crate::linalg::dot4`]) straight from the
//! contiguous factor array, and a bounded min-heap keeps the best `k`: a candidate that does not
//! beat the current k-th score costs one comparison. Excluded items (a user's history) are a
//! sorted list walked alongside the scan. Batches tile the item array so that a tile scored for
//! one user is still in cache for the next users of the same block.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::linalg::{dot, dot4};

/// An item with its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The item's index.
    pub item: u32,
    /// Its score (higher is better).
    pub score: f32,
}

/// Orders by score, and on equal scores prefers the lower item index, so results are
/// deterministic. As a heap element it is reversed, so the heap's top is the weakest kept item.
#[derive(Clone, Copy)]
struct Weakest(Scored);

impl PartialEq for Weakest {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Weakest {}
impl PartialOrd for Weakest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Weakest {
    fn cmp(&self, other: &Self) -> Ordering {
        // The stronger item is the smaller, so the max-heap's top is the weakest kept.
        better(&self.0, &other.0)
    }
}

/// `Less` when `a` ranks before `b`.
fn better(a: &Scored, b: &Scored) -> Ordering {
    b.score.total_cmp(&a.score).then(a.item.cmp(&b.item))
}

/// Keeps the best `k` of a stream of scored items.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Weakest>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, item: u32, score: f32) {
        if self.k == 0 || score.is_nan() {
            return;
        }
        let s = Scored { item, score };
        if self.heap.len() < self.k {
            self.heap.push(Weakest(s));
        } else if let Some(top) = self.heap.peek() {
            if better(&s, &top.0) == Ordering::Less {
                self.heap.pop();
                self.heap.push(Weakest(s));
            }
        }
    }

    /// The score an item must beat to enter (−∞ until the heap is full).
    #[inline]
    fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.score)
        }
    }

    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|w| w.0).collect();
        v.sort_by(better);
        v
    }

    fn merge(mut self, other: TopK) -> TopK {
        for w in other.heap {
            self.push(w.0.item, w.0.score);
        }
        self
    }
}

/// Scores `items[range]` against `query` into `top`, skipping the sorted `exclude` list.
fn scan(query: &[f32], items: &[f32], range: std::ops::Range<usize>, exclude: &[u32], top: &mut TopK) {
    let f = query.len();
    // Skip exclusions before the range.
    let mut ex = exclude.partition_point(|&e| (e as usize) < range.start);
    let mut offer = |i: usize, s: f32, top: &mut TopK| {
        if s < top.threshold() {
            return;
        }
        while ex < exclude.len() && (exclude[ex] as usize) < i {
            ex += 1;
        }
        if ex < exclude.len() && exclude[ex] as usize == i {
            return;
        }
        top.push(i as u32, s);
    };
    let mut i = range.start;
    while i + 4 <= range.end {
        let row = |j: usize| &items[j * f..(j + 1) * f];
        let s = dot4(query, row(i), row(i + 1), row(i + 2), row(i + 3));
        for (j, &sj) in s.iter().enumerate() {
            offer(i + j, sj, top);
        }
        i += 4;
    }
    while i < range.end {
        offer(i, dot(query, &items[i * f..(i + 1) * f]), top);
        i += 1;
    }
}

/// The exact `k` items with the largest inner product with `query`, best first, leaving out the
/// items in `exclude` (sorted ascending). `items` is row-major with `query.len()` floats per row.
/// Large catalogues are split across the current rayon pool's threads.
///
/// ```
/// use domicile_recommender::top_k_inner_product;
/// let items = [1.0, 0.0, 0.0, 1.0, 0.7, 0.7]; // three items, two factors
/// let top = top_k_inner_product(&[1.0, 0.2], &items, 2, &[]);
/// assert_eq!(top.iter().map(|s| s.item).collect::<Vec<_>>(), [0, 2]);
/// let top = top_k_inner_product(&[1.0, 0.2], &items, 2, &[0]);
/// assert_eq!(top.iter().map(|s| s.item).collect::<Vec<_>>(), [2, 1]);
/// ```
pub fn top_k_inner_product(query: &[f32], items: &[f32], k: usize, exclude: &[u32]) -> Vec<Scored> {
    let f = query.len();
    if f == 0 {
        return Vec::new();
    }
    let n = items.len() / f;
    // Below ~1M multiply-adds the thread hand-off costs more than it saves.
    const PARALLEL_WORK: usize = 1 << 20;
    let threads = rayon::current_num_threads();
    if n * f < PARALLEL_WORK || threads == 1 {
        let mut top = TopK::new(k);
        scan(query, items, 0..n, exclude, &mut top);
        return top.into_sorted();
    }
    let chunk = n.div_ceil(threads * 2).max(1024);
    (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let mut top = TopK::new(k);
            scan(query, items, c * chunk..((c + 1) * chunk).min(n), exclude, &mut top);
            top
        })
        .reduce(|| TopK::new(k), TopK::merge)
        .into_sorted()
}

/// Top-k for many queries at once (row-major, `f` floats each), in parallel over blocks of
/// queries. `exclude(q)` gives query `q`'s sorted exclusions.
pub fn top_k_batch<'a>(
    queries: &[f32],
    items: &[f32],
    f: usize,
    k: usize,
    exclude: impl Fn(usize) -> &'a [u32] + Sync,
) -> Vec<Vec<Scored>> {
    if f == 0 {
        return Vec::new();
    }
    let n_items = items.len() / f;
    // 16 queries × a 256-item tile (64 KiB at 64 factors) stays within L2 while the tile is
    // reused by every query of the block.
    const QUERY_BLOCK: usize = 16;
    const TILE: usize = 256;
    queries
        .par_chunks(f * QUERY_BLOCK)
        .enumerate()
        .flat_map_iter(|(b, block)| {
            let nq = block.len() / f;
            let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
            let mut start = 0;
            while start < n_items {
                let end = (start + TILE).min(n_items);
                for (q, top) in tops.iter_mut().enumerate() {
                    let query = &block[q * f..(q + 1) * f];
                    scan(query, items, start..end, exclude(b * QUERY_BLOCK + q), top);
                }
                start = end;
            }
            tops.into_iter().map(TopK::into_sorted)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute(query: &[f32], items: &[f32], k: usize, exclude: &[u32]) -> Vec<u32> {
        let f = query.len();
        let mut all: Vec<Scored> = (0..items.len() / f)
            .filter(|i| !exclude.contains(&(*i as u32)))
            .map(|i| Scored {
                item: i as u32,
                score: dot(query, &items[i * f..(i + 1) * f]),
            })
            .collect();
        all.sort_by(better);
        all.truncate(k);
        all.into_iter().map(|s| s.item).collect()
    }

    proptest! {
        #[test]
        fn matches_brute_force(
            f in 1usize..12,
            n in 0usize..300,
            k in 0usize..20,
            seed in any::<u64>(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            // Integers, so that summation order cannot change a comparison.
            let items: Vec<f32> = (0..n * f).map(|_| rng.random_range(-4i32..5) as f32).collect();
            let query: Vec<f32> = (0..f).map(|_| rng.random_range(-4i32..5) as f32).collect();
            let mut exclude: Vec<u32> = (0..n as u32).filter(|_| rng.random_bool(0.2)).collect();
            exclude.sort_unstable();
            let want = brute(&query, &items, k, &exclude);
            let got: Vec<u32> = top_k_inner_product(&query, &items, k, &exclude).iter().map(|s| s.item).collect();
            prop_assert_eq!(&got, &want);
            let queries: Vec<f32> = query.iter().chain(query.iter()).copied().collect();
            let batch = top_k_batch(&queries, &items, f, k, |_| &exclude[..]);
            prop_assert_eq!(batch.len(), 2);
            for b in batch {
                prop_assert_eq!(b.iter().map(|s| s.item).collect::<Vec<_>>(), want.clone());
            }
        }
    }

    #[test]
    fn parallel_split_matches_serial() {
        let f = 16;
        let n = 70_000;
        let items: Vec<f32> = (0..n * f).map(|i| ((i * 2654435761) % 1000) as f32 / 1000.0 - 0.5).collect();
        let query: Vec<f32> = (0..f).map(|i| i as f32 / 10.0 - 0.7).collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let par = pool.install(|| top_k_inner_product(&query, &items, 10, &[5, 6]));
        let mut top = TopK::new(10);
        scan(&query, &items, 0..n, &[5, 6], &mut top);
        assert_eq!(par, top.into_sorted());
    }
}
