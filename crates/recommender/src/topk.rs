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
fn scan(
    query: &[f32],
    items: &[f32],
    range: std::ops::Range<usize>,
    exclude: &[u32],
    top: &mut TopK,
) {
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

/// The `k` items with the largest scores, best first (equal scores: lower index first), leaving
/// out the items in `exclude` (sorted ascending) and every score that is NaN. `scores` holds one
/// score per item index: what an algorithm that scores the whole catalogue serves from.
///
/// ```
/// use domicile_recommender::top_k_scores;
/// let top = top_k_scores(&[0.1, 0.9, f32::NAN, 0.5], 2, &[1]);
/// assert_eq!(top.iter().map(|s| s.item).collect::<Vec<_>>(), [3, 0]);
/// ```
pub fn top_k_scores(scores: &[f32], k: usize, exclude: &[u32]) -> Vec<Scored> {
    let mut top = TopK::new(k);
    let mut ex = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() || s < top.threshold() {
            continue;
        }
        while ex < exclude.len() && (exclude[ex] as usize) < i {
            ex += 1;
        }
        if ex < exclude.len() && exclude[ex] as usize == i {
            continue;
        }
        top.push(i as u32, s);
    }
    top.into_sorted()
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
            scan(
                query,
                items,
                c * chunk..((c + 1) * chunk).min(n),
                exclude,
                &mut top,
            );
            top
        })
        .reduce(|| TopK::new(k), TopK::merge)
        .into_sorted()
}

/// Item factors with a 2-byte quantised copy for fast exact top-k of single queries.
///
/// Scanning 100k items × 64 f32 factors reads 25.6 MB per query, which is memory-bound. The
/// index keeps, beside the f32 rows, each row quantised to integers in `[-1023, 1023]` with a
/// per-row scale `s_i`, and the row's L1 norm in quantised units. A query is quantised the same
/// way (scale `s_x`), so the approximate score `a_i = s_i · s_x · (q_x · q_i)` is an integer dot
/// product (`pmaddwd`) over half the bytes. Its error is bounded:
///
/// ```text
/// |x·y_i − a_i| ≤ s_i/2 · (s_x · ‖q_i‖₁ + ‖x‖₁)  (+ a margin for f32 rounding)
/// ```
///
/// so every item whose upper bound reaches the k-th best lower bound is a candidate, and only
/// candidates are scored exactly, in f32, from the original rows. The result is exactly
/// [`top_k_inner_product`]'s.
#[derive(Debug, Clone)]
pub struct ItemIndex {
    f: usize,
    items: Vec<f32>,
    quantized: Vec<i16>,
    scale: Vec<f32>,
    l1: Vec<f32>,
}

const QUANT_LEVELS: f32 = 1023.0;

/// Quantises `row` into `out` (integers in ±1023); returns the scale and the L1 norm of `out`.
/// A zero row gets scale 0, a non-finite one NaN (its bounds are then the whole line, see
/// [`bounds`]).
fn quantize(row: &[f32], out: &mut [i16]) -> (f32, f32) {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    let s = max / QUANT_LEVELS;
    if !(s > 0.0 && s.is_finite()) {
        out.iter_mut().for_each(|q| *q = 0);
        let finite = row.iter().all(|v| v.is_finite());
        return (if finite { 0.0 } else { f32::NAN }, 0.0);
    }
    let mut norm = 0f32;
    for (q, &v) in out.iter_mut().zip(row) {
        *q = (v / s).round().clamp(-QUANT_LEVELS, QUANT_LEVELS) as i16;
        norm += (*q as f32).abs();
    }
    (s, norm)
}

/// The interval that holds the exact f32 score of a query (scale `sx`, L1 norm `x_l1`) and an
/// item (scale `s`, quantised L1 norm `l1`) whose quantised dot product is `int_dot`. See
/// [`ItemIndex`] for the bound; a non-finite input gives the whole line, so that the item is
/// always scored exactly.
#[inline]
fn bounds(int_dot: i32, s: f32, l1: f32, sx: f32, x_l1: f32, rounding: f32) -> (f32, f32) {
    let approx = s * sx * int_dot as f32;
    let bound = 0.5 * s * (sx * l1 + x_l1) * 1.0001 + rounding * x_l1 * s * QUANT_LEVELS;
    let (lo, hi) = (approx - bound, approx + bound);
    if lo.is_nan() || hi.is_nan() {
        (f32::NEG_INFINITY, f32::INFINITY)
    } else {
        (lo, hi)
    }
}

/// The f32 rounding allowance of an exact score with `f` factors, relative to `‖x‖₁ · max|y|`.
fn rounding(f: usize) -> f32 {
    f as f32 * 2.0 * f32::EPSILON
}

impl ItemIndex {
    /// Indexes row-major item factors with `f` floats per row.
    pub fn new(items: &[f32], f: usize) -> Self {
        let f = f.max(1);
        let n = items.len() / f;
        let mut quantized = vec![0i16; n * f];
        let mut scale = vec![0f32; n];
        let mut l1 = vec![0f32; n];
        for (i, row) in items.chunks_exact(f).enumerate() {
            (scale[i], l1[i]) = quantize(row, &mut quantized[i * f..(i + 1) * f]);
        }
        ItemIndex {
            f,
            items: items[..n * f].to_vec(),
            quantized,
            scale,
            l1,
        }
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.scale.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }

    /// The exact `k` best items for `query` (of `f` floats), leaving out the sorted `exclude`
    /// list; the same result as [`top_k_inner_product`] over the indexed rows. Large
    /// catalogues are split across the current rayon pool.
    pub fn top_k(&self, query: &[f32], k: usize, exclude: &[u32]) -> Vec<Scored> {
        let f = self.f;
        if query.len() != f || k == 0 {
            return Vec::new();
        }
        let mut qx = vec![0i16; f];
        let (sx, _) = quantize(query, &mut qx);
        if !(sx > 0.0 && sx.is_finite()) {
            // A zero (or non-finite) query: nothing to quantise, scan exactly.
            return top_k_inner_product(query, &self.items, k, exclude);
        }
        let x_l1: f32 = query.iter().map(|v| v.abs()).sum();
        let n = self.len();
        let threads = rayon::current_num_threads();
        const PARALLEL_ITEMS: usize = 16_384;
        if n < PARALLEL_ITEMS || threads == 1 {
            return self
                .scan(query, &qx, sx, x_l1, 0..n, k, exclude)
                .into_sorted();
        }
        let chunk = n.div_ceil(threads).max(4096);
        (0..n.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                self.scan(
                    query,
                    &qx,
                    sx,
                    x_l1,
                    c * chunk..((c + 1) * chunk).min(n),
                    k,
                    exclude,
                )
            })
            .reduce(|| TopK::new(k), TopK::merge)
            .into_sorted()
    }

    #[allow(clippy::too_many_arguments)]
    fn scan(
        &self,
        query: &[f32],
        qx: &[i16],
        sx: f32,
        x_l1: f32,
        range: std::ops::Range<usize>,
        k: usize,
        exclude: &[u32],
    ) -> TopK {
        let f = self.f;
        let rounding = rounding(f);
        let mut lower = TopK::new(k);
        let mut candidates: Vec<(u32, f32)> = Vec::new();
        let mut ex = exclude.partition_point(|&e| (e as usize) < range.start);
        for i in range {
            while ex < exclude.len() && (exclude[ex] as usize) < i {
                ex += 1;
            }
            if ex < exclude.len() && exclude[ex] as usize == i {
                continue;
            }
            let int_dot = dot_i16(qx, &self.quantized[i * f..(i + 1) * f]);
            let (lo, hi) = bounds(int_dot, self.scale[i], self.l1[i], sx, x_l1, rounding);
            let tau = lower.threshold();
            if hi < tau {
                continue;
            }
            lower.push(i as u32, lo);
            candidates.push((i as u32, hi));
            if candidates.len() > 8 * k + 256 {
                let tau = lower.threshold();
                candidates.retain(|c| c.1 >= tau);
            }
        }
        let tau = lower.threshold();
        let mut top = TopK::new(k);
        for (i, hi) in candidates {
            if hi >= tau {
                let i = i as usize;
                top.push(i as u32, dot(query, &self.items[i * f..(i + 1) * f]));
            }
        }
        top
    }
}

/// An integer inner product with lanes the compiler maps to `pmaddwd`. Quantised values are at
/// most 1023 in magnitude, so a lane sums at most `f/8 · 2 · 1023²` < 2³¹ for f ≤ 1024.
#[inline]
fn dot_i16(a: &[i16], b: &[i16]) -> i32 {
    let mut acc = [0i32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] as i32 * y[l] as i32;
        }
    }
    let mut total: i32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        total += *x as i32 * *y as i32;
    }
    total
}

/// Items in tiles of [`TILE_ITEMS`], each stored dimension-major (`tile[d * 8 + l]` is factor
/// `d` of the tile's item `l`), zero-padded: the layout of the batch kernel, in which one
/// broadcast query factor multiplies eight items' factors at once.
struct ItemTiles {
    f: usize,
    n: usize,
    data: Vec<f32>,
}

const TILE_ITEMS: usize = 8;

impl ItemTiles {
    fn new(items: &[f32], f: usize) -> Self {
        let n = items.len() / f;
        let tiles = n.div_ceil(TILE_ITEMS);
        let mut data = vec![0f32; tiles * TILE_ITEMS * f];
        for (i, row) in items.chunks_exact(f).enumerate() {
            let (t, l) = (i / TILE_ITEMS, i % TILE_ITEMS);
            let tile = &mut data[t * TILE_ITEMS * f..(t + 1) * TILE_ITEMS * f];
            for (d, &v) in row.iter().enumerate() {
                tile[d * TILE_ITEMS + l] = v;
            }
        }
        ItemTiles { f, n, data }
    }

    fn tiles(&self) -> usize {
        self.n.div_ceil(TILE_ITEMS)
    }

    fn tile(&self, t: usize) -> &[f32] {
        &self.data[t * TILE_ITEMS * self.f..(t + 1) * TILE_ITEMS * self.f]
    }
}

/// Scores of four queries against one tile of eight items: 32 accumulators that stay in
/// registers, one pass over the tile. Each query comes pre-broadcast (`q[u][4d..4d + 4]` is four
/// copies of factor `d`), so a factor is one vector load rather than a load and a shuffle; the
/// compiler turns the inner loops into SIMD multiply-adds.
#[inline]
fn kernel_4x8(q: [&[f32]; 4], tile: &[f32], f: usize) -> [[f32; TILE_ITEMS]; 4] {
    let (q0, q1, q2, q3) = (
        &q[0][..f * 4],
        &q[1][..f * 4],
        &q[2][..f * 4],
        &q[3][..f * 4],
    );
    let tile = &tile[..f * TILE_ITEMS];
    let mut acc = [[0f32; TILE_ITEMS]; 4];
    for (d, t) in tile.chunks_exact(TILE_ITEMS).enumerate() {
        let xs = [
            &q0[d * 4..d * 4 + 4],
            &q1[d * 4..d * 4 + 4],
            &q2[d * 4..d * 4 + 4],
            &q3[d * 4..d * 4 + 4],
        ];
        for (a, x) in acc.iter_mut().zip(&xs) {
            for l in 0..4 {
                a[l] += x[l] * t[l];
                a[4 + l] += x[l] * t[4 + l];
            }
        }
    }
    acc
}

/// A query's running state in a batch: its best items so far and its place in its exclusions.
struct Running<'a> {
    top: TopK,
    /// `top.threshold()`, cached: it is read for every score and changes rarely.
    tau: f32,
    exclude: &'a [u32],
    next_excluded: usize,
}

impl Running<'_> {
    /// Offers item `i` (items arrive in increasing order).
    #[inline]
    fn offer(&mut self, i: usize, s: f32) {
        if s < self.tau {
            return;
        }
        while self.next_excluded < self.exclude.len()
            && (self.exclude[self.next_excluded] as usize) < i
        {
            self.next_excluded += 1;
        }
        if self.next_excluded < self.exclude.len() && self.exclude[self.next_excluded] as usize == i
        {
            return;
        }
        self.top.push(i as u32, s);
        self.tau = self.top.threshold();
    }
}

/// Top-k for many queries at once (row-major, `f` floats each), in parallel over blocks of
/// queries. `exclude(q)` gives query `q`'s sorted exclusions. Exact: the same items as
/// [`top_k_inner_product`] for each query (scores may differ in the last bit, being summed in
/// another order).
///
/// Items are re-laid in tiles of eight, dimension-major, and a register-blocked kernel scores
/// four queries against eight items per pass; blocks of 32 queries sweep groups of 64 tiles so
/// that both stay in cache, and a tile row whose best score cannot enter a query's top-k is
/// dismissed with one comparison.
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
    let n_queries = queries.len() / f;
    let tiles = ItemTiles::new(items, f);
    // 32 queries (32 KiB broadcast, at 64 factors) against 64 tiles (512 items, 128 KiB) at a
    // time: both stay in L1/L2 while every query of the block passes over the tiles.
    const QUERY_BLOCK: usize = 32;
    const TILE_BLOCK: usize = 64;
    let zeros = vec![0f32; 4 * f];
    (0..n_queries.div_ceil(QUERY_BLOCK))
        .into_par_iter()
        .flat_map_iter(|b| {
            let first = b * QUERY_BLOCK;
            let last = (first + QUERY_BLOCK).min(n_queries);
            let broadcast: Vec<f32> = queries[first * f..last * f]
                .iter()
                .flat_map(|&x| [x; 4])
                .collect();
            let query = |q: usize| {
                if q < last {
                    &broadcast[(q - first) * 4 * f..(q - first + 1) * 4 * f]
                } else {
                    &zeros[..]
                }
            };
            let mut running: Vec<Running> = (first..last)
                .map(|q| Running {
                    top: TopK::new(k),
                    tau: f32::NEG_INFINITY,
                    exclude: exclude(q),
                    next_excluded: 0,
                })
                .collect();
            let mut t0 = 0;
            while t0 < tiles.tiles() {
                let t1 = (t0 + TILE_BLOCK).min(tiles.tiles());
                for q in (first..last).step_by(4) {
                    let qs = [query(q), query(q + 1), query(q + 2), query(q + 3)];
                    for t in t0..t1 {
                        let scores = kernel_4x8(qs, tiles.tile(t), f);
                        let base = t * TILE_ITEMS;
                        let width = TILE_ITEMS.min(tiles.n - base);
                        for (u, row) in scores.iter().enumerate() {
                            if let Some(r) = running.get_mut(q - first + u) {
                                // Most tiles hold nothing that beats the k-th best so far.
                                if row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s)) < r.tau {
                                    continue;
                                }
                                for (l, &s) in row[..width].iter().enumerate() {
                                    r.offer(base + l, s);
                                }
                            }
                        }
                    }
                }
                t0 = t1;
            }
            running.into_iter().map(|r| r.top.into_sorted())
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
            let indexed: Vec<u32> = ItemIndex::new(&items, f).top_k(&query, k, &exclude).iter().map(|s| s.item).collect();
            prop_assert_eq!(&indexed, &want);
            let queries: Vec<f32> = query.iter().chain(query.iter()).copied().collect();
            let batch = top_k_batch(&queries, &items, f, k, |_| &exclude[..]);
            prop_assert_eq!(batch.len(), 2);
            for b in batch {
                prop_assert_eq!(b.iter().map(|s| s.item).collect::<Vec<_>>(), want.clone());
            }
        }
    }

    proptest! {
        /// On real-valued factors (where quantisation error is never zero), the index still
        /// returns exactly the scan's answer, scores included.
        #[test]
        fn item_index_is_exact_on_floats(
            f in 1usize..70,
            n in 1usize..400,
            k in 1usize..25,
            seed in any::<u64>(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let items: Vec<f32> = (0..n * f).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
            let query: Vec<f32> = (0..f).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
            let mut exclude: Vec<u32> = (0..n as u32).filter(|_| rng.random_bool(0.1)).collect();
            exclude.sort_unstable();
            let want = top_k_inner_product(&query, &items, k, &exclude);
            prop_assert_eq!(ItemIndex::new(&items, f).top_k(&query, k, &exclude), want);
        }
    }

    #[test]
    fn parallel_split_matches_serial() {
        let f = 16;
        let n = 70_000;
        let items: Vec<f32> = (0..n * f)
            .map(|i| ((i * 2654435761) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let query: Vec<f32> = (0..f).map(|i| i as f32 / 10.0 - 0.7).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let par = pool.install(|| top_k_inner_product(&query, &items, 10, &[5, 6]));
        let mut top = TopK::new(10);
        scan(&query, &items, 0..n, &[5, 6], &mut top);
        let serial = top.into_sorted();
        assert_eq!(par, serial);
        let index = ItemIndex::new(&items, f);
        assert_eq!(pool.install(|| index.top_k(&query, 10, &[5, 6])), serial);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(one.install(|| index.top_k(&query, 10, &[5, 6])), serial);
        // The batch kernel sums in another order: the same items, scores to rounding.
        let items_of = |v: &[Scored]| v.iter().map(|s| s.item).collect::<Vec<_>>();
        let batch = pool.install(|| top_k_batch(&query, &items, f, 10, |_| &[5, 6]));
        assert_eq!(items_of(&batch[0]), items_of(&serial));

        // A non-finite row is never recommended, by any path.
        let mut broken = items.clone();
        broken[f * 9] = f32::NAN;
        let scanned = top_k_inner_product(&query, &broken, 10, &[]);
        assert!(scanned.iter().all(|s| s.item != 9));
        let with_nan = top_k_batch(&query, &broken, f, 10, |_| &[]);
        assert_eq!(items_of(&with_nan[0]), items_of(&scanned));
        assert_eq!(ItemIndex::new(&broken, f).top_k(&query, 10, &[]), scanned);
    }
}
