//! The dense linear algebra of EASE, in f64: a blocked Cholesky factorisation of `G + λI` and
//! the inverse from it by blocked triangular solves, both parallel over rows or column blocks.
//! No BLAS: the item counts EASE accepts are capped, and the blocking keeps the inner loops in
//! cache and vectorisable.

use rayon::prelude::*;

/// Columns of the panel the Cholesky factorisation updates at once.
const PANEL: usize = 64;
/// Right-hand sides solved together in the inverse (the width of the inner loops).
const RHS: usize = 32;

/// Whether this CPU runs AVX2, so the kernels below can use its 256-bit lanes (checked once;
/// the standard library caches the answer).
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The inner product, compiled for AVX2 where the CPU has it. Both versions run the same
/// operations in the same order, so the result is the same bit for bit.
#[allow(unsafe_code)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU was just found to support AVX2.
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2(a: &[f64], b: &[f64]) -> f64 {
    dot_portable(a, b)
}

#[inline(always)]
fn dot_portable(a: &[f64], b: &[f64]) -> f64 {
    // Sixteen independent accumulators, so the compiler keeps them in vector lanes and the
    // additions do not wait on each other.
    const ACC: usize = 16;
    let mut acc = [0f64; ACC];
    let chunks = a.len() / ACC;
    let (a_body, b_body) = (&a[..chunks * ACC], &b[..chunks * ACC]);
    for (x, y) in a_body.chunks_exact(ACC).zip(b_body.chunks_exact(ACC)) {
        for l in 0..ACC {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = 0.0;
    for pair in acc.chunks_exact(2) {
        s += pair[0] + pair[1];
    }
    for i in chunks * ACC..a.len() {
        s += a[i] * b[i];
    }
    s
}

/// Factors the symmetric positive definite `n × n` row-major matrix `a` in place into its
/// lower Cholesky factor `L` (`a = L Lᵀ`; only the lower triangle is read and written).
/// `Err(column)` if it is not numerically positive definite.
///
/// Left-looking by panels of [`PANEL`] columns: every row below the panel first subtracts the
/// contributions of the columns before the panel (one pass over the row, against panel rows
/// that stay in cache), then the panel is finished column by column.
pub(crate) fn cholesky_in_place(a: &mut [f64], n: usize) -> Result<(), usize> {
    debug_assert_eq!(a.len(), n * n);
    let mut j0 = 0;
    while j0 < n {
        let j1 = (j0 + PANEL).min(n);
        if j0 > 0 {
            // Rows inside the panel: their columns j0..=i.
            for i in j0..j1 {
                let (head, tail) = a.split_at_mut(i * n);
                let row_i = &mut tail[..n];
                let (prefix, rest) = row_i.split_at_mut(j0);
                for j in j0..i {
                    rest[j - j0] -= dot(prefix, &head[j * n..j * n + j0]);
                }
                rest[i - j0] -= dot(prefix, prefix);
            }
            // Rows below the panel, in parallel.
            let (head, tail) = a.split_at_mut(j1 * n);
            let panel = &head[j0 * n..];
            tail.par_chunks_mut(n).with_min_len(8).for_each(|row_i| {
                let (prefix, rest) = row_i.split_at_mut(j0);
                for j in j0..j1 {
                    rest[j - j0] -= dot(prefix, &panel[(j - j0) * n..(j - j0) * n + j0]);
                }
            });
        }
        // Finish the panel's columns with the panel's own contributions.
        for j in j0..j1 {
            let d = {
                let row_j = &a[j * n..j * n + j + 1];
                row_j[j] - dot(&row_j[j0..j], &row_j[j0..j])
            };
            if d.is_nan() || d <= 0.0 {
                return Err(j);
            }
            let d = d.sqrt();
            a[j * n + j] = d;
            let (head, tail) = a.split_at_mut((j + 1) * n);
            let row_j = &head[j * n + j0..j * n + j];
            tail.par_chunks_mut(n).with_min_len(64).for_each(|row_i| {
                row_i[j] = (row_i[j] - dot(&row_i[j0..j], row_j)) / d;
            });
        }
        j0 = j1;
    }
    Ok(())
}

/// The inverse `P = (L Lᵀ)⁻¹` from the Cholesky factor `l`, as f32, row-major, into `p`.
///
/// `P` is symmetric, so its rows `c0..c0+RHS` are the solutions of `L Lᵀ X = E` for the
/// identity's columns `c0..c0+RHS`: a forward solve from row `c0` (the rows above are zero), then
/// a backward one down to row `c0` (the rest of those rows is copied from the rows above, by
/// symmetry), each reading `L` one row at a time against `RHS` right-hand sides at once.
/// Blocks are independent, so they run in parallel, compiled for AVX2 where the CPU has it
/// (the same operations in the same order: the same result bit for bit).
#[allow(unsafe_code)]
pub(crate) fn inverse_from_cholesky(l: &[f64], n: usize, p: &mut [f32]) {
    debug_assert_eq!(p.len(), n * n);
    let use_avx2 = avx2();
    p.par_chunks_mut(RHS * n)
        .enumerate()
        .for_each(|(block, rows)| {
            #[cfg(target_arch = "x86_64")]
            if use_avx2 {
                // SAFETY: the CPU was found to support AVX2.
                return unsafe { solve_block_avx2(l, n, block * RHS, rows) };
            }
            let _ = use_avx2;
            solve_block(l, n, block * RHS, rows)
        });
    mirror_lower(p, n);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn solve_block_avx2(l: &[f64], n: usize, c0: usize, rows: &mut [f32]) {
    solve_block(l, n, c0, rows)
}

/// Rows `c0..c0 + rows.len() / n` of the inverse into `rows`: one block of
/// [`inverse_from_cholesky`].
#[inline(always)]
fn solve_block(l: &[f64], n: usize, c0: usize, rows: &mut [f32]) {
    let width = rows.len() / n;
    // y[k * RHS + t]: row k, right-hand side t (padding columns stay zero).
    let mut y = vec![0f64; n * RHS];
    // Forward: L Y = E.
    for i in c0..n {
        let mut acc = [0f64; RHS];
        if i < c0 + width {
            acc[i - c0] = 1.0;
        }
        let li = &l[i * n..i * n + i];
        for (k, &lik) in li.iter().enumerate().skip(c0) {
            if lik != 0.0 {
                let yk = &y[k * RHS..(k + 1) * RHS];
                for t in 0..RHS {
                    acc[t] -= lik * yk[t];
                }
            }
        }
        let d = l[i * n + i];
        for t in 0..RHS {
            y[i * RHS + t] = acc[t] / d;
        }
    }
    // Backward: Lᵀ X = Y. Row i of L is column i of Lᵀ: once x_i is known, its terms leave
    // every earlier equation. Only x_c0.. are solved: P is symmetric, so the columns before c0
    // of these rows are the rows before c0's columns here, which their own blocks solve
    // ([`mirror_lower`] copies them), and no x_k with k ≥ c0 depends on an earlier one. This
    // halves the inverse's work.
    for i in (c0..n).rev() {
        let d = l[i * n + i];
        let mut xi = [0f64; RHS];
        for t in 0..RHS {
            xi[t] = y[i * RHS + t] / d;
            y[i * RHS + t] = xi[t];
        }
        let li = &l[i * n..i * n + i];
        for (k, &lik) in li.iter().enumerate().skip(c0) {
            if lik != 0.0 {
                let yk = &mut y[k * RHS..(k + 1) * RHS];
                for t in 0..RHS {
                    yk[t] -= lik * xi[t];
                }
            }
        }
    }
    for t in 0..width {
        let row = &mut rows[t * n..(t + 1) * n];
        for (k, v) in row.iter_mut().enumerate().skip(c0) {
            *v = y[k * RHS + t] as f32;
        }
    }
}

/// Fills each row's columns before its block's first row from the rows above, which hold
/// them (`P` is symmetric): what [`solve_block`] leaves out.
fn mirror_lower(p: &mut [f32], n: usize) {
    for i in RHS..n {
        let c0 = i / RHS * RHS;
        for j in 0..c0 {
            p[i * n + j] = p[j * n + i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `A = MᵀM + I` for a fixed M: symmetric positive definite.
    fn spd(n: usize) -> Vec<f64> {
        let m: Vec<f64> = (0..n * n)
            .map(|i| ((i * 37 % 17) as f64 - 8.0) / 8.0)
            .collect();
        let mut a = vec![0f64; n * n];
        for r in 0..n {
            for c in 0..n {
                a[r * n + c] = (0..n).map(|k| m[k * n + r] * m[k * n + c]).sum::<f64>()
                    + if r == c { 1.0 } else { 0.0 };
            }
        }
        a
    }

    #[test]
    fn the_inverse_times_the_matrix_is_the_identity() {
        // Sizes around the panel and block widths, so that every edge is crossed.
        for n in [1, 5, 31, 33, 64, 65, 130] {
            let a = spd(n);
            let mut l = a.clone();
            cholesky_in_place(&mut l, n).unwrap();
            let mut p = vec![0f32; n * n];
            inverse_from_cholesky(&l, n, &mut p);
            for r in 0..n {
                for c in 0..n {
                    let v: f64 = (0..n).map(|k| a[r * n + k] * p[k * n + c] as f64).sum();
                    let want = if r == c { 1.0 } else { 0.0 };
                    assert!((v - want).abs() < 1e-4, "n {n}: ({r}, {c}) = {v}");
                }
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    fn the_avx2_kernels_give_the_portable_results_bit_for_bit() {
        if !avx2() {
            eprintln!("SKIPPED: this CPU has no AVX2");
            return;
        }
        let n = 131;
        let mut l = spd(n);
        cholesky_in_place(&mut l, n).unwrap();
        for len in [0, 1, 15, 16, 17, 100] {
            let (a, b) = (&l[..len], &l[n..n + len]);
            // SAFETY: AVX2 was just detected.
            let fast = unsafe { dot_avx2(a, b) };
            assert_eq!(fast.to_bits(), dot_portable(a, b).to_bits(), "length {len}");
        }
        let mut portable = vec![0f32; RHS * n];
        let mut fast = vec![0f32; RHS * n];
        solve_block(&l, n, RHS, &mut portable);
        // SAFETY: AVX2 was just detected.
        unsafe { solve_block_avx2(&l, n, RHS, &mut fast) };
        assert!(portable
            .iter()
            .zip(&fast)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn a_matrix_that_is_not_positive_definite_is_refused_at_its_column() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        assert_eq!(cholesky_in_place(&mut a, 2), Err(1));
        let mut nan = vec![f64::NAN];
        assert_eq!(cholesky_in_place(&mut nan, 1), Err(0));
    }
}
