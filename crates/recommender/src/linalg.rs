//! The few dense kernels the models need, written so that the compiler vectorises them: fixed
//! lanes of independent accumulators (floating-point addition is not associative, so a plain
//! `sum()` would stay scalar).

const LANES: usize = 8;

/// Whether this CPU runs AVX2: hot loops then run a copy of the same code compiled for its
/// 256-bit lanes (the standard library caches the answer).
pub(crate) fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The inner product of two equally long slices.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// Four inner products of `q` with four rows at once, so that each chunk of `q` is loaded once
/// per four rows: the kernel of the scoring loops.
#[inline(always)]
pub(crate) fn dot4(q: &[f32], r0: &[f32], r1: &[f32], r2: &[f32], r3: &[f32]) -> [f32; 4] {
    let n = q.len();
    let (r0, r1, r2, r3) = (&r0[..n], &r1[..n], &r2[..n], &r3[..n]);
    let mut a0 = [0f32; LANES];
    let mut a1 = [0f32; LANES];
    let mut a2 = [0f32; LANES];
    let mut a3 = [0f32; LANES];
    let full = n - n % LANES;
    let mut i = 0;
    while i < full {
        let x = &q[i..i + LANES];
        let (y0, y1, y2, y3) = (
            &r0[i..i + LANES],
            &r1[i..i + LANES],
            &r2[i..i + LANES],
            &r3[i..i + LANES],
        );
        for l in 0..LANES {
            a0[l] += x[l] * y0[l];
            a1[l] += x[l] * y1[l];
            a2[l] += x[l] * y2[l];
            a3[l] += x[l] * y3[l];
        }
        i += LANES;
    }
    // The same summation order as `dot`, so both give bit-identical scores.
    let mut tail = [0f32; 4];
    for j in full..n {
        tail[0] += q[j] * r0[j];
        tail[1] += q[j] * r1[j];
        tail[2] += q[j] * r2[j];
        tail[3] += q[j] * r3[j];
    }
    [
        a0.iter().sum::<f32>() + tail[0],
        a1.iter().sum::<f32>() + tail[1],
        a2.iter().sum::<f32>() + tail[2],
        a3.iter().sum::<f32>() + tail[3],
    ]
}

/// `y += a * x`.
#[inline(always)]
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// `out = m * v` for a square row-major `m`.
#[inline(always)]
pub(crate) fn symv(m: &[f32], v: &[f32], out: &mut [f32]) {
    let f = v.len();
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot(&m[r * f..(r + 1) * f], v);
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` (row-major, n × n) by Cholesky, in
/// f64. Returns `None` if `a` is not positive definite.
pub(crate) fn cholesky_solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0f64; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    let mut x = vec![0f64; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    Some(x)
}

/// Factors a symmetric positive definite `n × n` row-major matrix in place into its Cholesky
/// factor `L` (lower triangle; the strict upper triangle is left as it was, and only the lower
/// triangle of the input is read). Returns `false` if the matrix is not (numerically) positive
/// definite.
///
/// f32 with the lane-wise `dot`: the fold-in solve is on the serving path, and its matrix
/// (`YᵀY + λI` plus the user's rank-one terms) is as well conditioned as the training solves,
/// which are f32 too.
pub(crate) fn cholesky_in_place(a: &mut [f32], n: usize) -> bool {
    for j in 0..n {
        let row = &a[j * n..j * n + j];
        let d = a[j * n + j] - dot(row, row);
        if d.is_nan() || d <= 0.0 {
            return false;
        }
        a[j * n + j] = d.sqrt();
        let (head, tail) = a.split_at_mut((j + 1) * n);
        let row_j = &head[j * n..j * n + j];
        let d = head[j * n + j];
        for row_i in tail.chunks_exact_mut(n) {
            row_i[j] = (row_i[j] - dot(&row_i[..j], row_j)) / d;
        }
    }
    true
}

/// Solves `L Lᵀ x = b` in place (`b` becomes `x`) with the factor of [`cholesky_in_place`].
pub(crate) fn cholesky_solve_in_place(l: &[f32], n: usize, b: &mut [f32]) {
    // Forward: L y = b.
    for i in 0..n {
        let s = b[i] - dot(&l[i * n..i * n + i], &b[..i]);
        b[i] = s / l[i * n + i];
    }
    // Backward: Lᵀ x = y. Row i of L is column i of Lᵀ: once x_i is known, its terms leave
    // every earlier equation.
    for i in (0..n).rev() {
        let xi = b[i] / l[i * n + i];
        b[i] = xi;
        axpy(-xi, &l[i * n..i * n + i], &mut b[..i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_kernels_agree_with_the_definition() {
        let q: Vec<f32> = (0..19).map(|i| i as f32 * 0.5 - 3.0).collect();
        let rows: Vec<Vec<f32>> = (0..4)
            .map(|r| {
                (0..19)
                    .map(|i| ((i * 7 + r * 3) % 5) as f32 - 2.0)
                    .collect()
            })
            .collect();
        let naive = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let four = dot4(&q, &rows[0], &rows[1], &rows[2], &rows[3]);
        for r in 0..4 {
            assert!((dot(&q, &rows[r]) - naive(&q, &rows[r])).abs() < 1e-4);
            assert!((four[r] - naive(&q, &rows[r])).abs() < 1e-4);
            assert_eq!(four[r].to_bits(), dot(&q, &rows[r]).to_bits());
        }
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        // [[4,2],[2,3]] x = [2,1] has x = [0.5, 0].
        let x = cholesky_solve(&[4.0, 2.0, 2.0, 3.0], &[2.0, 1.0]).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(cholesky_solve(&[0.0, 1.0, 1.0, 0.0], &[1.0, 1.0]).is_none());
    }

    #[test]
    fn in_place_cholesky_agrees_with_the_f64_solver() {
        // A = MᵀM + I for a fixed M: symmetric positive definite, 11 × 11 (not a lane multiple).
        let n = 11;
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
        let b: Vec<f64> = (0..n).map(|i| i as f64 - 5.0).collect();
        let want = cholesky_solve(&a, &b).unwrap();
        let mut l: Vec<f32> = a.iter().map(|&v| v as f32).collect();
        assert!(cholesky_in_place(&mut l, n));
        let mut x: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        cholesky_solve_in_place(&l, n, &mut x);
        for i in 0..n {
            assert!(
                (x[i] as f64 - want[i]).abs() < 1e-3 * (1.0 + want[i].abs()),
                "{i}"
            );
        }
        let mut singular = vec![1f32, 1.0, 1.0, 1.0];
        assert!(!cholesky_in_place(&mut singular, 2));
    }
}
