//! Implicit-feedback alternating least squares (Hu, Koren & Volinsky, "Collaborative Filtering
//! for Implicit Feedback Datasets", ICDM 2008), solved with the conjugate gradient method of
//! Takács, Pilászy & Tikk ("Applications of the conjugate gradient method for implicit feedback
//! collaborative filtering", RecSys 2011).
//!
//! For a user `u` with observed items `I(u)`, weights `w_ui` and item factors `Y`, the confidence
//! is `c_ui = 1 + alpha × w_ui` (1 for unobserved items) and the preference is `p_ui = 1` for
//! observed items (0 otherwise). A half-sweep solves, for every user at once,
//!
//! ```text
//! (YᵀY + λI + Σ_{i∈I(u)} (c_ui − 1) y_i y_iᵀ) x_u = Σ_{i∈I(u)} c_ui y_i
//! ```
//!
//! `YᵀY + λI` is computed once per half-sweep; the per-user part touches only the user's own
//! items, so a sweep costs `O(nnz·f + n·f²)` per CG step. Each solve starts from the previous
//! sweep's `x_u` (a warm start), so a few CG steps per sweep are enough. The other half-sweep
//! swaps the roles of users and items.

use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::interactions::Csr;
use std::sync::OnceLock;

use crate::linalg::{axpy, cholesky_in_place, cholesky_solve, cholesky_solve_in_place, dot, symv};
use crate::RecsysError;

/// Hyper-parameters of implicit ALS.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlsConfig {
    /// The number of latent factors.
    pub factors: usize,
    /// The number of sweeps (each solves users, then items).
    pub iterations: usize,
    /// The L2 penalty λ on every factor vector.
    pub regularization: f32,
    /// Confidence scale: `c = 1 + alpha × weight`.
    pub alpha: f32,
    /// Conjugate gradient steps per solve.
    pub cg_steps: usize,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Seed of the initial factors.
    pub seed: u64,
}

impl Default for AlsConfig {
    fn default() -> Self {
        AlsConfig {
            factors: 64,
            iterations: 15,
            regularization: 0.05,
            alpha: 2.0,
            cg_steps: 3,
            threads: 0,
            seed: 42,
        }
    }
}

impl AlsConfig {
    /// Refuses values outside their range.
    pub fn validate(&self) -> Result<(), RecsysError> {
        let bad = |name, value: String, reason| {
            Err(RecsysError::InvalidConfig {
                name,
                value,
                reason,
            })
        };
        if self.factors == 0 || self.factors > 1024 {
            return bad("factors", self.factors.to_string(), "expected 1 to 1024");
        }
        if self.iterations == 0 || self.iterations > 1000 {
            return bad(
                "iterations",
                self.iterations.to_string(),
                "expected 1 to 1000",
            );
        }
        if !(self.regularization >= 0.0 && self.regularization.is_finite()) {
            return bad(
                "regularization",
                self.regularization.to_string(),
                "expected a finite number >= 0",
            );
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return bad(
                "alpha",
                self.alpha.to_string(),
                "expected a finite number > 0",
            );
        }
        if self.cg_steps == 0 || self.cg_steps > 1024 {
            return bad("cg_steps", self.cg_steps.to_string(), "expected 1 to 1024");
        }
        if self.threads > 1024 {
            return bad(
                "threads",
                self.threads.to_string(),
                "expected 0 (all cores) to 1024",
            );
        }
        Ok(())
    }
}

/// How each least-squares problem is solved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Solver {
    /// A few warm-started conjugate gradient steps (the production solver).
    ConjugateGradient,
    /// Cholesky in f64 on the full normal equations: slow, exact, for tests.
    Exact,
}

/// Trained user and item factors, row-major, `factors` floats per row.
#[derive(Debug, Clone, PartialEq)]
pub struct AlsModel {
    /// The number of factors per row.
    pub factors: usize,
    /// `n_users × factors` user factors.
    pub user_factors: Vec<f32>,
    /// `n_items × factors` item factors.
    pub item_factors: Vec<f32>,
}

/// Runs `f` on a new rayon pool of `threads` workers (0: one per core), so that a caller's
/// thread budget holds for everything `f` runs in parallel.
pub fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T, RecsysError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| RecsysError::InvalidConfig {
            name: "threads",
            value: format!("{threads} ({e})"),
            reason: "the thread pool could not be started",
        })?;
    Ok(pool.install(f))
}

impl AlsModel {
    /// Fits the model with the conjugate gradient solver. `user_items` is the user × item weight
    /// matrix; `n_items` its number of columns.
    pub fn fit(user_items: &Csr, n_items: usize, config: &AlsConfig) -> Result<Self, RecsysError> {
        Self::fit_with(user_items, n_items, config, Solver::ConjugateGradient)
    }

    /// Fits the model with the given solver.
    pub fn fit_with(
        user_items: &Csr,
        n_items: usize,
        config: &AlsConfig,
        solver: Solver,
    ) -> Result<Self, RecsysError> {
        config.validate()?;
        if user_items.nnz() == 0 {
            return Err(RecsysError::Empty(
                "the interaction matrix has no positive pairs",
            ));
        }
        let f = config.factors;
        let n_users = user_items.rows();
        let item_users = user_items.transpose(n_items);
        // Small uniform initial factors, as `implicit` does: large enough to break symmetry,
        // small enough that the first sweep is driven by the data.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
        let mut init =
            |n: usize| -> Vec<f32> { (0..n * f).map(|_| rng.random::<f32>() * 0.01).collect() };
        let mut model = AlsModel {
            factors: f,
            user_factors: init(n_users),
            item_factors: init(n_items),
        };
        in_pool(config.threads, || {
            for _ in 0..config.iterations {
                half_sweep(
                    &model.item_factors,
                    &mut model.user_factors,
                    user_items,
                    config,
                    solver,
                );
                half_sweep(
                    &model.user_factors,
                    &mut model.item_factors,
                    &item_users,
                    config,
                    solver,
                );
            }
        })?;
        Ok(model)
    }

    /// The number of users.
    pub fn n_users(&self) -> usize {
        self.user_factors.len() / self.factors
    }

    /// The number of items.
    pub fn n_items(&self) -> usize {
        self.item_factors.len() / self.factors
    }

    /// User `u`'s factors.
    pub fn user(&self, u: usize) -> &[f32] {
        &self.user_factors[u * self.factors..(u + 1) * self.factors]
    }

    /// Item `i`'s factors.
    pub fn item(&self, i: usize) -> &[f32] {
        &self.item_factors[i * self.factors..(i + 1) * self.factors]
    }

    /// The predicted preference of user `u` for item `i`.
    pub fn score(&self, u: usize, i: usize) -> f32 {
        dot(self.user(u), self.item(i))
    }

    /// The value of the objective the model minimises:
    /// `Σ_u Σ_i c_ui (p_ui − x_uᵀy_i)² + λ(‖X‖² + ‖Y‖²)`, summed over all user × item cells
    /// (computed without visiting the zeros, through `x_uᵀ(YᵀY)x_u`).
    pub fn loss(&self, user_items: &Csr, config: &AlsConfig) -> f64 {
        let f = self.factors;
        let yty = gram(&self.item_factors, f, 0.0);
        let mut total = 0f64;
        let mut tmp = vec![0f32; f];
        for u in 0..user_items.rows() {
            let x = self.user(u);
            symv(&yty, x, &mut tmp);
            total += dot(x, &tmp) as f64;
            let (items, weights) = user_items.row(u);
            for (&i, &w) in items.iter().zip(weights) {
                let c = 1.0 + (config.alpha * w) as f64;
                let s = dot(x, self.item(i as usize)) as f64;
                // The cell was counted above as s²; replace that with c(1 − s)².
                total += c * (1.0 - s) * (1.0 - s) - s * s;
            }
        }
        let norm = |v: &[f32]| v.iter().map(|&a| (a as f64) * (a as f64)).sum::<f64>();
        total + config.regularization as f64 * (norm(&self.user_factors) + norm(&self.item_factors))
    }
}

/// The item side of a trained ALS model, all that a model artifact carries of it: the item
/// factors and the two hyper-parameters a fold-in needs.
///
/// User factors are per-subject state, Protected data of their subject (invariant 10 of the
/// design): they are never stored beside the item factors, but recomputed at serving time from
/// the subject's own history by [`ItemFactors::fold_in`].
#[derive(Debug, Clone)]
pub struct ItemFactors {
    pub(crate) factors: usize,
    pub(crate) items: Vec<f32>,
    pub(crate) regularization: f32,
    pub(crate) alpha: f32,
    /// `YᵀY + λI`, computed once, on the first fold-in.
    gram: OnceLock<Vec<f32>>,
    /// `Z = Y (YᵀY + λI)⁻¹` (row-major, like `items`), computed once, on the first fold-in of a
    /// short history; `None` when `YᵀY + λI` is singular (λ = 0 only).
    solved: OnceLock<Option<Vec<f32>>>,
}

impl PartialEq for ItemFactors {
    fn eq(&self, other: &Self) -> bool {
        self.factors == other.factors
            && self.items == other.items
            && self.regularization.to_bits() == other.regularization.to_bits()
            && self.alpha.to_bits() == other.alpha.to_bits()
    }
}

/// Construction, access and fold-in.
impl ItemFactors {
    /// Item factors (`n_items × factors`, row-major) with the confidence scale and penalty they
    /// were trained with.
    pub(crate) fn new(factors: usize, items: Vec<f32>, config: &AlsConfig) -> Self {
        ItemFactors {
            factors,
            items,
            regularization: config.regularization,
            alpha: config.alpha,
            gram: OnceLock::new(),
            solved: OnceLock::new(),
        }
    }

    /// The number of factors per item.
    pub fn factors(&self) -> usize {
        self.factors
    }

    /// The number of items.
    pub fn n_items(&self) -> usize {
        self.items.len() / self.factors
    }

    /// All item factors, row-major, [`Self::factors`] floats per item.
    pub fn item_factors(&self) -> &[f32] {
        &self.items
    }

    /// Item `i`'s factors.
    pub fn item(&self, i: usize) -> &[f32] {
        &self.items[i * self.factors..(i + 1) * self.factors]
    }

    /// A user's factors, folded in from their history (item indices and weights): the exact
    /// solution of the user's equation of training against the fixed item factors,
    ///
    /// ```text
    /// x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u = (YᵀY + λI + Σ_{i∈I(u)} α·w_ui y_i y_iᵀ)⁻¹ Σ_{i∈I(u)} (1 + α·w_ui) y_i
    /// ```
    ///
    /// as `implicit`'s `recalculate_user` computes it. `YᵀY + λI` is computed once per model, so
    /// one fold-in costs `O(|I(u)|·f² + f³/6)`: a Cholesky solve of one `f × f` system. A history
    /// of at most `f / 2` items takes the Woodbury identity instead, against `Z = Y(YᵀY + λI)⁻¹`
    /// (also computed once per model): with `A = YᵀY + λI`, `D = diag(α·w_ui)` and `u = A⁻¹b =
    /// Σ c_ui z_i`,
    ///
    /// ```text
    /// x_u = u − Z_Iᵀ (D⁻¹ + Y_I Z_Iᵀ)⁻¹ Y_I u
    /// ```
    ///
    /// an `|I(u)| × |I(u)|` solve, `O(|I(u)|²·f + |I(u)|³/6)`: most users' histories are far
    /// shorter than `f`. Both paths solve the same equation (a test checks that they agree). An
    /// empty history folds in to the zero vector.
    pub fn fold_in(&self, items: &[u32], weights: &[f32]) -> Vec<f32> {
        let mut x = vec![0f32; self.factors];
        self.fold_in_into(items, weights, &mut x, &mut Vec::new());
        x
    }

    /// [`Self::fold_in`] into `x`, with `a` as scratch for the system's matrix.
    pub(crate) fn fold_in_into(
        &self,
        items: &[u32],
        weights: &[f32],
        x: &mut [f32],
        a: &mut Vec<f32>,
    ) {
        let f = self.factors;
        x.fill(0.0);
        if items.is_empty() {
            return;
        }
        if 2 * items.len() <= f && self.fold_in_short(items, weights, x, a) {
            return;
        }
        x.fill(0.0);
        self.fold_in_direct(items, weights, x, a);
    }

    /// The `f × f` Cholesky solve of [`Self::fold_in`], for any history.
    pub(crate) fn fold_in_direct(
        &self,
        items: &[u32],
        weights: &[f32],
        x: &mut [f32],
        a: &mut Vec<f32>,
    ) {
        let f = self.factors;
        let gram = self
            .gram
            .get_or_init(|| gram(&self.items, f, self.regularization));
        a.clear();
        a.extend_from_slice(gram);
        for (&i, &w) in items.iter().zip(weights) {
            let y = self.item(i as usize);
            let cm1 = self.alpha * w;
            // Lower triangle only: the Cholesky factorisation reads no more.
            for r in 0..f {
                axpy(cm1 * y[r], &y[..=r], &mut a[r * f..r * f + r + 1]);
            }
            axpy(1.0 + cm1, y, x);
        }
        if !cholesky_in_place(a, f) {
            // Only possible with λ = 0 and a history spanning fewer than f directions: no unique
            // solution exists, and the zero vector (no ALS evidence) is the honest answer.
            x.fill(0.0);
            return;
        }
        cholesky_solve_in_place(a, f, x);
    }

    /// The Woodbury solve of [`Self::fold_in`] for a short history. Returns `false` (leaving `x`
    /// to be overwritten) when `YᵀY + λI` or the small system is not positive definite, so that
    /// the caller takes the direct path.
    fn fold_in_short(
        &self,
        items: &[u32],
        weights: &[f32],
        x: &mut [f32],
        a: &mut Vec<f32>,
    ) -> bool {
        let f = self.factors;
        let Some(z) = self.solved() else {
            return false;
        };
        let n = items.len();
        let zi = |i: u32| &z[i as usize * f..(i as usize + 1) * f];
        // u = A⁻¹ b = Σ c_i z_i, into x.
        for (&i, &w) in items.iter().zip(weights) {
            axpy(1.0 + self.alpha * w, zi(i), x);
        }
        // M = D⁻¹ + Y_I Z_Iᵀ (lower triangle; symmetric, as y_j·A⁻¹y_k is), and r = Y_I u.
        a.clear();
        a.resize(n * n + n, 0.0);
        let (m, r) = a.split_at_mut(n * n);
        for (j, (&ij, &wj)) in items.iter().zip(weights).enumerate() {
            let yj = self.item(ij as usize);
            for (k, &ik) in items[..=j].iter().enumerate() {
                m[j * n + k] = dot(yj, zi(ik));
            }
            let d = self.alpha * wj;
            if !(d > 0.0 && d.is_finite()) {
                return false;
            }
            m[j * n + j] += 1.0 / d;
            r[j] = dot(yj, x);
        }
        if !cholesky_in_place(m, n) {
            return false;
        }
        cholesky_solve_in_place(m, n, r);
        // x = u − Z_Iᵀ t.
        for (&i, &t) in items.iter().zip(r.iter()) {
            axpy(-t, zi(i), x);
        }
        true
    }

    /// `Z = Y (YᵀY + λI)⁻¹`, computed on first use: the inverse in f64 from the Cholesky factor of
    /// the Gram matrix, then one matrix-vector product per item, in parallel.
    fn solved(&self) -> Option<&[f32]> {
        self.solved
            .get_or_init(|| {
                let f = self.factors;
                let gram = self
                    .gram
                    .get_or_init(|| gram(&self.items, f, self.regularization));
                let g: Vec<f64> = gram.iter().map(|&v| v as f64).collect();
                let mut inverse = vec![0f32; f * f];
                let mut e = vec![0f64; f];
                for c in 0..f {
                    e.fill(0.0);
                    e[c] = 1.0;
                    let col = cholesky_solve(&g, &e)?;
                    for (r, v) in col.into_iter().enumerate() {
                        inverse[r * f + c] = v as f32;
                    }
                }
                let mut z = vec![0f32; self.items.len()];
                z.par_chunks_mut(f)
                    .zip(self.items.par_chunks(f))
                    .with_min_len(256)
                    .for_each(|(zi, yi)| symv(&inverse, yi, zi));
                Some(z)
            })
            .as_deref()
    }
}

/// `MᵀM + reg·I` for a row-major `rows × f` matrix, summed in parallel.
fn gram(m: &[f32], f: usize, reg: f32) -> Vec<f32> {
    const BLOCK: usize = 512;
    let mut g = m
        .par_chunks(f * BLOCK)
        .fold(
            || vec![0f32; f * f],
            |mut acc, block| {
                for row in block.chunks_exact(f) {
                    // Upper triangle only; mirrored below.
                    for a in 0..f {
                        axpy(row[a], &row[a..], &mut acc[a * f + a..(a + 1) * f]);
                    }
                }
                acc
            },
        )
        .reduce(
            || vec![0f32; f * f],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    *x += y;
                }
                a
            },
        );
    for a in 0..f {
        for b in 0..a {
            g[a * f + b] = g[b * f + a];
        }
        g[a * f + a] += reg;
    }
    g
}

/// Solves every row of `target` against the fixed factors.
#[allow(unsafe_code)]
fn half_sweep(fixed: &[f32], target: &mut [f32], rows: &Csr, config: &AlsConfig, solver: Solver) {
    let f = config.factors;
    let yty = gram(fixed, f, config.regularization);
    let use_avx2 = crate::linalg::avx2();
    target
        .par_chunks_mut(f)
        .enumerate()
        .with_min_len(32)
        .for_each_init(
            || vec![0f32; 3 * f],
            |scratch, (r, x)| {
                let (items, weights) = rows.row(r);
                if items.is_empty() {
                    // With no observations the right-hand side is zero, and so is the solution.
                    x.fill(0.0);
                    return;
                }
                match solver {
                    #[cfg(target_arch = "x86_64")]
                    Solver::ConjugateGradient if use_avx2 => {
                        // SAFETY: the CPU was found to support AVX2.
                        unsafe {
                            conjugate_gradient_avx2(&yty, fixed, items, weights, config, x, scratch)
                        }
                    }
                    Solver::ConjugateGradient => {
                        conjugate_gradient(&yty, fixed, items, weights, config, x, scratch)
                    }
                    Solver::Exact => exact(&yty, fixed, items, weights, config, x),
                }
            },
        );
    let _ = use_avx2;
}

/// [`conjugate_gradient`] compiled for AVX2's 256-bit lanes: the same operations in the same
/// order, so the same result bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn conjugate_gradient_avx2(
    yty: &[f32],
    y: &[f32],
    items: &[u32],
    weights: &[f32],
    config: &AlsConfig,
    x: &mut [f32],
    scratch: &mut [f32],
) {
    conjugate_gradient(yty, y, items, weights, config, x, scratch)
}

/// A few conjugate gradient steps on one user's normal equations, starting from `x`.
#[inline(always)]
fn conjugate_gradient(
    yty: &[f32],
    y: &[f32],
    items: &[u32],
    weights: &[f32],
    config: &AlsConfig,
    x: &mut [f32],
    scratch: &mut [f32],
) {
    let f = x.len();
    let (r, rest) = scratch.split_at_mut(f);
    let (p, ap) = rest.split_at_mut(f);
    // r = b − A x, with A = YᵀY + λI + Σ (c−1) y yᵀ and b = Σ c y.
    symv(yty, x, r);
    r.iter_mut().for_each(|v| *v = -*v);
    for (&i, &w) in items.iter().zip(weights) {
        let yi = &y[i as usize * f..(i as usize + 1) * f];
        let cm1 = config.alpha * w;
        axpy((1.0 + cm1) - cm1 * dot(yi, x), yi, r);
    }
    p.copy_from_slice(r);
    let mut rs_old = dot(r, r);
    if rs_old < 1e-20 {
        return;
    }
    for _ in 0..config.cg_steps {
        symv(yty, p, ap);
        for (&i, &w) in items.iter().zip(weights) {
            let yi = &y[i as usize * f..(i as usize + 1) * f];
            axpy(config.alpha * w * dot(yi, p), yi, ap);
        }
        let curvature = dot(p, ap);
        // Positive for λ > 0; with λ = 0 a direction can be flat, and stepping would divide by 0.
        if curvature.is_nan() || curvature <= 0.0 {
            break;
        }
        let step = rs_old / curvature;
        axpy(step, p, x);
        axpy(-step, ap, r);
        let rs_new = dot(r, r);
        if rs_new < 1e-20 {
            break;
        }
        let beta = rs_new / rs_old;
        for (pv, rv) in p.iter_mut().zip(r.iter()) {
            *pv = rv + beta * *pv;
        }
        rs_old = rs_new;
    }
}

/// The exact solution of one user's normal equations, in f64.
fn exact(
    yty: &[f32],
    y: &[f32],
    items: &[u32],
    weights: &[f32],
    config: &AlsConfig,
    x: &mut [f32],
) {
    let f = x.len();
    let mut a: Vec<f64> = yty.iter().map(|&v| v as f64).collect();
    let mut b = vec![0f64; f];
    for (&i, &w) in items.iter().zip(weights) {
        let yi = &y[i as usize * f..(i as usize + 1) * f];
        let cm1 = (config.alpha * w) as f64;
        for r in 0..f {
            b[r] += (1.0 + cm1) * yi[r] as f64;
            for c in 0..f {
                a[r * f + c] += cm1 * yi[r] as f64 * yi[c] as f64;
            }
        }
    }
    // With λ > 0 the matrix is positive definite; with λ = 0 and too few observations it may
    // not be, and the previous x is kept rather than replaced by garbage.
    if let Some(solution) = cholesky_solve(&a, &b) {
        for (xv, s) in x.iter_mut().zip(solution) {
            *xv = s as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InteractionsBuilder;

    #[test]
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    fn the_avx2_solve_gives_the_portable_result_bit_for_bit() {
        if !crate::linalg::avx2() {
            eprintln!("SKIPPED: this CPU has no AVX2");
            return;
        }
        let config = AlsConfig::default();
        let f = config.factors;
        let y: Vec<f32> = (0..40 * f)
            .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 300.0)
            .collect();
        let yty = gram(&y, f, config.regularization);
        let items: Vec<u32> = (0..40).step_by(3).collect();
        let weights: Vec<f32> = items.iter().map(|&i| 1.0 + i as f32 / 7.0).collect();
        let start: Vec<f32> = (0..f).map(|i| (i as f32 - 30.0) / 100.0).collect();
        let (mut portable, mut fast) = (start.clone(), start);
        let mut scratch = vec![0f32; 3 * f];
        conjugate_gradient(
            &yty,
            &y,
            &items,
            &weights,
            &config,
            &mut portable,
            &mut scratch,
        );
        // SAFETY: AVX2 was just detected.
        unsafe {
            conjugate_gradient_avx2(&yty, &y, &items, &weights, &config, &mut fast, &mut scratch)
        };
        assert!(portable
            .iter()
            .zip(&fast)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(portable.iter().any(|v| *v != 0.0));
    }

    fn small() -> Csr {
        let mut b = InteractionsBuilder::new();
        for u in 0..30u32 {
            for i in 0..20u32 {
                if (u * 7 + i * 3) % 5 == 0 || (u % 3 == i % 3 && i % 2 == 0) {
                    b.add(
                        &format!("u{u}"),
                        &format!("i{i}"),
                        1.0 + (u + i) as f32 % 3.0,
                        0,
                    );
                }
            }
        }
        b.build().unwrap().user_items()
    }

    #[test]
    fn cg_with_enough_steps_agrees_with_the_exact_solver() {
        let m = small();
        let config = AlsConfig {
            factors: 4,
            iterations: 4,
            regularization: 0.1,
            alpha: 1.5,
            cg_steps: 12,
            threads: 1,
            seed: 7,
        };
        let cg = AlsModel::fit_with(&m, 20, &config, Solver::ConjugateGradient).unwrap();
        let ex = AlsModel::fit_with(&m, 20, &config, Solver::Exact).unwrap();
        for u in 0..30 {
            for i in 0..20 {
                let (a, b) = (cg.score(u, i), ex.score(u, i));
                assert!((a - b).abs() < 2e-3, "user {u} item {i}: cg {a} exact {b}");
            }
        }
    }

    #[test]
    fn loss_never_increases_with_the_exact_solver_and_falls_with_cg() {
        let m = small();
        let mut config = AlsConfig {
            factors: 6,
            iterations: 1,
            threads: 1,
            ..AlsConfig::default()
        };
        let mut last = f64::INFINITY;
        for it in 1..=5 {
            config.iterations = it;
            let loss = AlsModel::fit_with(&m, 20, &config, Solver::Exact)
                .unwrap()
                .loss(&m, &config);
            assert!(loss <= last + 1e-6, "iteration {it}: {loss} > {last}");
            last = loss;
        }
        config.iterations = 1;
        let one = AlsModel::fit(&m, 20, &config).unwrap().loss(&m, &config);
        config.iterations = 8;
        let eight = AlsModel::fit(&m, 20, &config).unwrap().loss(&m, &config);
        assert!(eight < one, "{eight} !< {one}");
    }

    #[test]
    fn threads_do_not_change_the_result() {
        let m = small();
        let config = AlsConfig {
            factors: 8,
            iterations: 3,
            threads: 1,
            ..AlsConfig::default()
        };
        let one = AlsModel::fit(&m, 20, &config).unwrap();
        let two = AlsModel::fit(
            &m,
            20,
            &AlsConfig {
                threads: 2,
                ..config
            },
        )
        .unwrap();
        // Each row's solve is independent of scheduling; only YᵀY's summation order may differ.
        for (a, b) in one.user_factors.iter().zip(&two.user_factors) {
            assert!((a - b).abs() < 1e-3);
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let m = small();
        for config in [
            AlsConfig {
                factors: 0,
                ..AlsConfig::default()
            },
            AlsConfig {
                alpha: -1.0,
                ..AlsConfig::default()
            },
            AlsConfig {
                regularization: f32::NAN,
                ..AlsConfig::default()
            },
        ] {
            let err = AlsModel::fit(&m, 20, &config).unwrap_err();
            assert!(matches!(err, RecsysError::InvalidConfig { .. }), "{err}");
        }
        assert!(matches!(
            AlsModel::fit(&Csr::default(), 0, &AlsConfig::default()),
            Err(RecsysError::Empty(_))
        ));
    }

    #[test]
    fn the_woodbury_fold_in_agrees_with_the_direct_solve() {
        use rand::{Rng, SeedableRng};
        let f = 16;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let items: Vec<f32> = (0..300 * f).map(|_| rng.random_range(-0.5..0.5)).collect();
        for reg in [0.01f32, 0.05, 1.0] {
            let config = AlsConfig {
                factors: f,
                regularization: reg,
                alpha: 2.0,
                ..AlsConfig::default()
            };
            let model = ItemFactors::new(f, items.clone(), &config);
            for trial in 0..200 {
                let n = 1 + trial % (f / 2);
                let mut history: Vec<u32> = (0..n).map(|_| rng.random_range(0..300)).collect();
                history.sort_unstable();
                history.dedup();
                let weights: Vec<f32> = history
                    .iter()
                    .map(|_| rng.random_range(0.01..40.0))
                    .collect();
                let mut short = vec![0f32; f];
                assert!(model.fold_in_short(&history, &weights, &mut short, &mut Vec::new()));
                let mut direct = vec![0f32; f];
                model.fold_in_direct(&history, &weights, &mut direct, &mut Vec::new());
                let scale = direct.iter().map(|v| v.abs()).fold(1e-3, f32::max);
                for (a, b) in short.iter().zip(&direct) {
                    assert!(
                        (a - b).abs() <= 2e-3 * scale,
                        "λ {reg}, n {n}: {short:?} vs {direct:?}"
                    );
                }
                assert_eq!(model.fold_in(&history, &weights), short);
            }
        }
    }
}
