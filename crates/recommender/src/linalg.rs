//! The few dense kernels the models need, written so that the compiler vectorises them: fixed
//! lanes of independent accumulators (floating-point addition is not associative, so a plain
//! `sum()` would stay scalar).

const LANES: usize = 8;

/// The inner product of two equally long slices.
#[inline]
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
#[inline]
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
#[inline]
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// `out = m * v` for a square row-major `m`.
#[inline]
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
}
