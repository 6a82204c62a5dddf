//! The interaction matrix: who interacted with what, how strongly and when, with the maps from
//! external string ids to dense indices.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use domicile_residency::{CountryCode, PolicyId, Region, ResidencyError};

use crate::event::{ConfidenceWeights, Event};
use crate::RecsysError;

/// A two-way map between external string ids and dense `u32` indices, in first-seen order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    ids: Vec<String>,
    index: HashMap<String, u32>,
}

impl IdMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `id`, adding it if it is new.
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = u32::try_from(self.ids.len()).expect("more than 2^32 distinct ids");
        self.ids.push(id.to_owned());
        self.index.insert(id.to_owned(), i);
        i
    }

    /// The index of `id`, if known.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The id at `index`.
    ///
    /// # Panics
    /// If `index` was not handed out by this map.
    pub fn id(&self, index: u32) -> &str {
        &self.ids[index as usize]
    }

    /// How many ids the map holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids, by index.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// A map over `ids` in order, or `None` if an id repeats.
    pub(crate) fn from_ids(ids: Vec<String>) -> Option<Self> {
        let index: HashMap<String, u32> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        (index.len() == ids.len()).then_some(IdMap { ids, index })
    }
}

/// A compressed sparse row matrix of `f32` weights with sorted column indices per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csr {
    pub(crate) indptr: Vec<usize>,
    pub(crate) indices: Vec<u32>,
    pub(crate) values: Vec<f32>,
}

impl Csr {
    /// Builds a matrix with `rows` rows from (row, column, value) triples sorted by row then
    /// column.
    pub(crate) fn from_sorted(rows: usize, triples: impl Iterator<Item = (u32, u32, f32)>) -> Self {
        let mut indptr = vec![0usize; rows + 1];
        let mut indices = Vec::new();
        let mut values = Vec::new();
        for (r, c, v) in triples {
            indptr[r as usize + 1] += 1;
            indices.push(c);
            values.push(v);
        }
        for r in 0..rows {
            indptr[r + 1] += indptr[r];
        }
        Csr {
            indptr,
            indices,
            values,
        }
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// The number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// The column indices and values of row `r`.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// The transpose, with `columns` rows.
    pub fn transpose(&self, columns: usize) -> Csr {
        let mut indptr = vec![0usize; columns + 1];
        for &c in &self.indices {
            indptr[c as usize + 1] += 1;
        }
        for c in 0..columns {
            indptr[c + 1] += indptr[c];
        }
        let mut next = indptr.clone();
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0f32; self.nnz()];
        for r in 0..self.rows() {
            let (cols, vals) = self.row(r);
            for (&c, &v) in cols.iter().zip(vals) {
                let at = next[c as usize];
                indices[at] = r as u32;
                values[at] = v;
                next[c as usize] += 1;
            }
        }
        Csr {
            indptr,
            indices,
            values,
        }
    }
}

/// One aggregated (user, item) pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    /// The user's index.
    pub user: u32,
    /// The item's index.
    pub item: u32,
    /// The implicit-feedback weight (always positive).
    pub weight: f32,
    /// The latest timestamp seen for the pair, in milliseconds (0 when none was given).
    pub timestamp: i64,
}

/// The interaction matrix with its id maps and the side information the recommender uses: each
/// user's country (for provenance) and each item's creator (for per-creator caps).
///
/// Pairs are unique and sorted by (user, item); weights are positive.
#[derive(Debug, Clone, Default)]
pub struct Interactions {
    /// User ids.
    pub users: IdMap,
    /// Item ids.
    pub items: IdMap,
    /// Creator ids.
    pub creators: IdMap,
    /// Each user's country, by user index, if known.
    pub user_country: Vec<Option<CountryCode>>,
    /// Each item's creator index, by item index, if known.
    pub item_creator: Vec<Option<u32>>,
    pairs: Vec<Interaction>,
}

/// One raw observation, with the line it came from (for errors).
#[derive(Debug, Clone, Copy)]
struct Observation {
    user: u32,
    item: u32,
    weight: f32,
    line: u32,
    timestamp: i64,
}

/// Collects raw (user, item, weight, timestamp) observations, then aggregates them.
#[derive(Debug)]
pub struct InteractionsBuilder {
    data: Interactions,
    raw: Vec<Observation>,
    /// Where the observations come from, for errors.
    source: String,
    /// The line the next observations come from (`None`: count observations instead).
    line: Option<usize>,
}

impl Default for InteractionsBuilder {
    fn default() -> Self {
        Self::named("<input>")
    }
}

impl InteractionsBuilder {
    /// An empty builder; errors name the source `<input>` and observations by their 1-based
    /// position.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder whose errors name `source` (a file) and the line set by
    /// [`Self::at_line`].
    pub fn named(source: &str) -> Self {
        InteractionsBuilder {
            data: Interactions::default(),
            raw: Vec::new(),
            source: source.to_owned(),
            line: None,
        }
    }

    /// The 1-based line of the source the next observations come from.
    pub fn at_line(&mut self, line: usize) {
        self.line = Some(line);
    }

    fn observe(&mut self, user: u32, item: u32, weight: f32, timestamp: i64) {
        let line = self.line.unwrap_or(self.raw.len() + 1);
        self.raw.push(Observation {
            user,
            item,
            weight,
            line: u32::try_from(line).unwrap_or(u32::MAX),
            timestamp,
        });
    }

    /// Adds an observation. Observations of the same pair are summed; the pair keeps the latest
    /// timestamp.
    pub fn add(&mut self, user: &str, item: &str, weight: f32, timestamp: i64) -> (u32, u32) {
        let u = self.user(user);
        let i = self.item(item);
        self.observe(u, i, weight, timestamp);
        (u, i)
    }

    /// Adds an observation by indices already handed out by [`Self::user`] and [`Self::item`].
    pub fn add_indexed(&mut self, user: u32, item: u32, weight: f32, timestamp: i64) {
        self.observe(user, item, weight, timestamp);
    }

    /// The index of a user, adding it if new.
    pub fn user(&mut self, user: &str) -> u32 {
        let u = self.data.users.intern(user);
        if u as usize == self.data.user_country.len() {
            self.data.user_country.push(None);
        }
        u
    }

    /// The index of an item, adding it if new.
    pub fn item(&mut self, item: &str) -> u32 {
        let i = self.data.items.intern(item);
        if i as usize == self.data.item_creator.len() {
            self.data.item_creator.push(None);
        }
        i
    }

    /// Records a user's country.
    pub fn set_country(&mut self, user: u32, country: CountryCode) {
        self.data.user_country[user as usize] = Some(country);
    }

    /// Records an item's creator.
    pub fn set_creator(&mut self, item: u32, creator: &str) {
        let c = self.data.creators.intern(creator);
        self.data.item_creator[item as usize] = Some(c);
    }

    /// Adds one feedback event, weighted by `weights`.
    pub fn add_event(
        &mut self,
        event: &Event,
        weights: &ConfidenceWeights,
    ) -> Result<(), ResidencyError> {
        let (u, i) = self.add(
            &event.user,
            &event.video,
            weights.weight(&event.kind),
            event.timestamp,
        );
        if let Some(country) = &event.country {
            self.set_country(u, CountryCode::parse(country)?);
        }
        if let Some(creator) = &event.creator {
            self.set_creator(i, creator);
        }
        Ok(())
    }

    /// Aggregates the observations: sums each pair's weights and drops pairs whose total is not
    /// positive (a video only skipped is unobserved).
    ///
    /// A weight that is not a finite number, or a pair whose weights sum past the largest `f32`,
    /// is an error naming the source and line ([`RecsysError::Malformed`]): silently dropping
    /// the pair would hide the strongest signal in the data.
    pub fn build(self) -> Result<Interactions, RecsysError> {
        let InteractionsBuilder {
            mut data,
            mut raw,
            source,
            ..
        } = self;
        let malformed = |line: u32, reason: String| RecsysError::Malformed {
            path: source.clone(),
            line: line as usize,
            reason,
        };
        if let Some(o) = raw.iter().find(|o| !o.weight.is_finite()) {
            return Err(malformed(
                o.line,
                format!("weight {} is not a finite number", o.weight),
            ));
        }
        // Stable, so a pair's observations stay in input order and an overflow is reported at
        // the line whose weight pushed the sum past the largest f32.
        raw.sort_by_key(|p| (p.user, p.item));
        let mut pairs: Vec<Interaction> = Vec::with_capacity(raw.len());
        for p in raw {
            match pairs.last_mut() {
                Some(last) if last.user == p.user && last.item == p.item => {
                    let sum = last.weight + p.weight;
                    if !sum.is_finite() {
                        return Err(malformed(
                            p.line,
                            format!(
                                "weight {:e} brings its (user, item) pair's summed weight past the \
                                 largest finite f32 ({:e}); scale the weights down",
                                p.weight,
                                f32::MAX
                            ),
                        ));
                    }
                    last.weight = sum;
                    last.timestamp = last.timestamp.max(p.timestamp);
                }
                _ => pairs.push(Interaction {
                    user: p.user,
                    item: p.item,
                    weight: p.weight,
                    timestamp: p.timestamp,
                }),
            }
        }
        pairs.retain(|p| p.weight > 0.0);
        data.pairs = pairs;
        Ok(data)
    }
}

impl Interactions {
    /// The aggregated pairs, sorted by (user, item).
    pub fn pairs(&self) -> &[Interaction] {
        &self.pairs
    }

    /// The number of users known (including users whose pairs were all dropped or held out).
    pub fn n_users(&self) -> usize {
        self.users.len()
    }

    /// The number of items known.
    pub fn n_items(&self) -> usize {
        self.items.len()
    }

    /// The user × item weight matrix.
    pub fn user_items(&self) -> Csr {
        Csr::from_sorted(
            self.n_users(),
            self.pairs.iter().map(|p| (p.user, p.item, p.weight)),
        )
    }

    /// A copy with the same id maps and side information but other pairs (which must be sorted
    /// by (user, item)). Used by the hold-out splits, so that train and test share indices.
    pub fn with_pairs(&self, pairs: Vec<Interaction>) -> Interactions {
        Interactions {
            users: self.users.clone(),
            items: self.items.clone(),
            creators: self.creators.clone(),
            user_country: self.user_country.clone(),
            item_creator: self.item_creator.clone(),
            pairs,
        }
    }

    /// The number of distinct users with at least one pair.
    pub fn active_users(&self) -> usize {
        let mut n = 0;
        let mut last = None;
        for p in &self.pairs {
            if last != Some(p.user) {
                n += 1;
                last = Some(p.user);
            }
        }
        n
    }

    /// SHA-256 over the pairs in (user id, item id) order, each as user id, item id (both
    /// length-prefixed), weight bits and timestamp: the training-data digest of a model's
    /// manifest. It depends on the data only, not on the order rows were read in or the indices
    /// they were given.
    pub fn digest(&self) -> [u8; 32] {
        let rank = |map: &IdMap| {
            let mut order: Vec<u32> = (0..map.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| map.id(a).cmp(map.id(b)));
            let mut rank = vec![0u32; map.len()];
            for (r, &i) in order.iter().enumerate() {
                rank[i as usize] = r as u32;
            }
            rank
        };
        let (user_rank, item_rank) = (rank(&self.users), rank(&self.items));
        let mut order: Vec<u32> = (0..self.pairs.len() as u32).collect();
        order.sort_unstable_by_key(|&p| {
            let p = &self.pairs[p as usize];
            (user_rank[p.user as usize], item_rank[p.item as usize])
        });
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"domicile interactions v1");
        ctx.update(&(self.pairs.len() as u64).to_le_bytes());
        for &at in &order {
            let p = &self.pairs[at as usize];
            for id in [self.users.id(p.user), self.items.id(p.item)] {
                ctx.update(&(id.len() as u32).to_le_bytes());
                ctx.update(id.as_bytes());
            }
            ctx.update(&p.weight.to_bits().to_le_bytes());
            ctx.update(&p.timestamp.to_le_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// The provenance of a model trained on these interactions: the home region of every user
    /// with at least one pair (found by `home_region` from the user's id and country), the counts
    /// and the digest.
    ///
    /// `home_region` is usually a residency policy's `home_region`; any error it returns (an
    /// unknown country, say) stops the computation, because a model whose provenance is unknown
    /// must not exist.
    pub fn provenance<F>(
        &self,
        policy: Option<PolicyId>,
        mut home_region: F,
    ) -> Result<crate::Provenance, RecsysError>
    where
        F: FnMut(&str, Option<CountryCode>) -> Result<Region, ResidencyError>,
    {
        let mut trained_on = std::collections::BTreeSet::new();
        let mut cache: HashMap<Option<CountryCode>, Region> = HashMap::new();
        let mut last = None;
        let mut subjects = 0u64;
        for p in &self.pairs {
            if last == Some(p.user) {
                continue;
            }
            last = Some(p.user);
            subjects += 1;
            let country = self.user_country[p.user as usize];
            // Policies decide by country, so one answer per country is enough; the id is still
            // passed so that a policy can refuse malformed ids.
            let region = match cache.get(&country) {
                Some(r) => r.clone(),
                None => {
                    let r = home_region(self.users.id(p.user), country)?;
                    cache.insert(country, r.clone());
                    r
                }
            };
            trained_on.insert(region);
        }
        Ok(crate::Provenance {
            trained_on,
            subjects,
            events: self.pairs.len() as u64,
            data_digest: self.digest(),
            policy,
        })
    }

    /// Reads an interactions CSV file (see [`Interactions::parse_csv`]) or, when the path ends in
    /// `.jsonl`, an events file weighted by `weights`.
    pub fn read(path: &Path, weights: &ConfidenceWeights) -> Result<Interactions, RecsysError> {
        let file = std::fs::File::open(path).map_err(|e| RecsysError::io("open", path, e))?;
        let name = path.display().to_string();
        let reader = BufReader::with_capacity(1 << 20, file);
        if path.extension().is_some_and(|e| e == "jsonl") {
            Self::parse_events(reader, &name, weights)
        } else {
            Self::parse_csv(reader, &name)
        }
    }

    /// Parses an interactions CSV: a header naming the columns, `user` and `item` required,
    /// `weight` (default 1), `timestamp` (milliseconds, default 0), `country` and `creator`
    /// optional, in any order. Ids are arbitrary strings without commas or quotes. A malformed
    /// line is an error naming its line number.
    pub fn parse_csv(reader: impl BufRead, name: &str) -> Result<Interactions, RecsysError> {
        let malformed = |line: usize, reason: String| RecsysError::Malformed {
            path: name.to_owned(),
            line,
            reason,
        };
        let mut lines = bounded_lines(reader);
        let header = match lines.next() {
            Some(h) => h.map_err(|e| malformed(1, e))?,
            None => {
                return Err(malformed(
                    1,
                    "the file is empty; expected a header such as `user,item,weight`".into(),
                ))
            }
        };
        let columns: Vec<&str> = header
            .trim_end_matches('\r')
            .split(',')
            .map(str::trim)
            .collect();
        let find = |name: &str| columns.iter().position(|c| *c == name);
        let (user_col, item_col) = match (find("user"), find("item")) {
            (Some(u), Some(i)) => (u, i),
            _ => {
                return Err(malformed(
                    1,
                    format!("header {header:?} must name the columns `user` and `item`"),
                ))
            }
        };
        let weight_col = find("weight");
        let ts_col = find("timestamp");
        let country_col = find("country");
        let creator_col = find("creator");
        let mut b = InteractionsBuilder::named(name);
        for (n, line) in lines.enumerate() {
            let lineno = n + 2;
            b.at_line(lineno);
            let line = line.map_err(|e| malformed(lineno, e))?;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != columns.len() {
                return Err(malformed(
                    lineno,
                    format!(
                        // The line's content is not quoted: it holds user ids.
                        "the line has {} fields, the header has {}",
                        fields.len(),
                        columns.len()
                    ),
                ));
            }
            let (user, item) = (fields[user_col].trim(), fields[item_col].trim());
            if user.is_empty() || item.is_empty() {
                return Err(malformed(
                    lineno,
                    "the line has an empty user or item id".to_owned(),
                ));
            }
            let weight = match weight_col {
                None => 1.0,
                Some(c) => match fields[c].trim().parse::<f32>() {
                    Ok(w) if w.is_finite() => w,
                    _ => {
                        return Err(malformed(
                            lineno,
                            format!("weight {:?} is not a finite number", fields[c]),
                        ))
                    }
                },
            };
            let timestamp = match ts_col {
                None => 0,
                Some(c) if fields[c].trim().is_empty() => 0,
                Some(c) => fields[c].trim().parse::<i64>().map_err(|_| {
                    malformed(
                        lineno,
                        format!("timestamp {:?} is not an integer", fields[c]),
                    )
                })?,
            };
            let (u, i) = b.add(user, item, weight, timestamp);
            if let Some(c) = country_col {
                let text = fields[c].trim();
                if !text.is_empty() {
                    let country =
                        CountryCode::parse(text).map_err(|e| malformed(lineno, e.to_string()))?;
                    b.set_country(u, country);
                }
            }
            if let Some(c) = creator_col {
                let text = fields[c].trim();
                if !text.is_empty() {
                    b.set_creator(i, text);
                }
            }
        }
        b.build()
    }

    /// Parses an events JSONL file (one [`Event`] per line), weighting each event by `weights`.
    pub fn parse_events(
        reader: impl BufRead,
        name: &str,
        weights: &ConfidenceWeights,
    ) -> Result<Interactions, RecsysError> {
        let mut b = InteractionsBuilder::named(name);
        for (n, line) in bounded_lines(reader).enumerate() {
            b.at_line(n + 1);
            let malformed = |reason: String| RecsysError::Malformed {
                path: name.to_owned(),
                line: n + 1,
                reason,
            };
            let line = line.map_err(malformed)?;
            if line.trim().is_empty() {
                continue;
            }
            let event: Event = serde_json::from_str(&line).map_err(|e| {
                // serde's message may quote the line's values, which hold ids: only where
                // and what kind.
                malformed(format!(
                    "not an event ({:?} error at column {})",
                    e.classify(),
                    e.column()
                ))
            })?;
            b.add_event(&event, weights)
                .map_err(|e| malformed(e.to_string()))?;
        }
        b.build()
    }

    /// Writes the pairs as an interactions CSV with every column this type knows
    /// (`user,item,weight,timestamp,country,creator`).
    pub fn write_csv(&self, path: &Path) -> Result<(), RecsysError> {
        let file = std::fs::File::create(path).map_err(|e| RecsysError::io("create", path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let write = |out: &mut BufWriter<std::fs::File>| -> std::io::Result<()> {
            writeln!(out, "user,item,weight,timestamp,country,creator")?;
            for p in &self.pairs {
                let country = self.user_country[p.user as usize]
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                let creator = self.item_creator[p.item as usize]
                    .map(|c| self.creators.id(c))
                    .unwrap_or("");
                writeln!(
                    out,
                    "{},{},{},{},{},{}",
                    self.users.id(p.user),
                    self.items.id(p.item),
                    p.weight,
                    p.timestamp,
                    country,
                    creator
                )?;
            }
            out.flush()
        };
        write(&mut out).map_err(|e| RecsysError::io("write", path, e))
    }
}

/// The longest line an interactions CSV or events file may hold: a few ids and numbers, with
/// room to spare. A longer line is refused by number once this many bytes of it are read, so a
/// file without newlines is never held in memory whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The lines of `reader` without their line endings (`\n` or `\r\n`), each at most
/// [`MAX_LINE_BYTES`] and UTF-8 ([`domicile_durable::read_line_bounded`]); an error (which ends
/// the lines) says which rule a line broke, without quoting it.
fn bounded_lines(mut reader: impl BufRead) -> impl Iterator<Item = Result<String, String>> {
    let mut buf = Vec::new();
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let line =
            match domicile_durable::read_line_bounded(&mut reader, &mut buf, MAX_LINE_BYTES as u64)
            {
                Ok(None) => return None,
                Ok(Some((_, line))) => Ok(line.to_owned()),
                Err(domicile_durable::LineError::Io(e)) => Err(format!("unreadable: {e}")),
                Err(e) => Err(e.to_string()),
            };
        done = line.is_err();
        Some(line)
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_malformed_csv_line_is_named_by_file_and_number_not_quoted() {
        let csv = "user,item\nalice@example.com,v1\nbob@example.com,v2,extra\n";
        let err = Interactions::parse_csv(csv.as_bytes(), "events.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("events.csv") && err.contains('3'), "{err}");
        assert!(!err.contains("bob@example.com"), "{err}");
        let err = Interactions::parse_csv("user,item\ncarol@example.com,\n".as_bytes(), "x.csv")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("carol@example.com"), "{err}");
    }

    /// A line past the bound, or not UTF-8, is refused by number, unquoted, in both formats;
    /// line endings of either kind are read alike.
    #[test]
    fn overlong_and_binary_lines_are_refused_by_number() {
        let mut long = b"user,item\nalice,v1\n".to_vec();
        long.resize(long.len() + MAX_LINE_BYTES + 10, b'x');
        let err = Interactions::parse_csv(&long[..], "long.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("long.csv") && err.contains('3'), "{err}");
        assert!(err.contains("longer than"), "{err}");
        let weights = ConfidenceWeights::default();
        let err = Interactions::parse_events(&long[..], "long.jsonl", &weights)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("longer than") || err.contains("not an event"),
            "{err}"
        );
        let err = Interactions::parse_csv(&b"user,item\nsecret-\xffid,v1\n"[..], "bin.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not UTF-8") && err.contains('2'), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let crlf =
            Interactions::parse_csv(&b"user,item\r\nalice,v1\r\nbob,v2"[..], "crlf.csv").unwrap();
        let lf = Interactions::parse_csv(&b"user,item\nalice,v1\nbob,v2\n"[..], "lf.csv").unwrap();
        assert_eq!(crlf.pairs().len(), 2);
        assert_eq!(crlf.digest(), lf.digest());
    }

    use super::*;

    /// A pair with everything the CSV carries, by id.
    type Row = (
        String,
        String,
        u32,
        i64,
        Option<CountryCode>,
        Option<String>,
    );

    proptest::proptest! {
        /// Writing the CSV and reading it back yields the same pairs, ids, countries, creators
        /// and digest: f32 weights print in their shortest round-tripping form.
        #[test]
        fn csv_round_trips(
            rows in proptest::collection::vec((0u8..20, 0u8..30, 0.001f32..50.0, 0i64..1_000_000_000), 1..80),
        ) {
            let mut b = InteractionsBuilder::new();
            for (u, i, w, t) in &rows {
                let (uu, ii) = b.add(&format!("user-{u}"), &format!("item {i}"), *w, *t);
                b.set_country(uu, CountryCode::parse(if u % 2 == 0 { "US" } else { "BR" }).unwrap());
                b.set_creator(ii, &format!("c{}", i % 4));
            }
            let m = b.build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.csv");
            m.write_csv(&path).unwrap();
            let back = Interactions::read(&path, &ConfidenceWeights::default()).unwrap();
            proptest::prop_assert_eq!(back.pairs().len(), m.pairs().len());
            proptest::prop_assert_eq!(back.digest(), m.digest());
            let rows_of = |d: &Interactions| {
                let mut v: Vec<Row> = d
                    .pairs()
                    .iter()
                    .map(|p| {
                        (
                            d.users.id(p.user).to_owned(),
                            d.items.id(p.item).to_owned(),
                            p.weight.to_bits(),
                            p.timestamp,
                            d.user_country[p.user as usize],
                            d.item_creator[p.item as usize].map(|c| d.creators.id(c).to_owned()),
                        )
                    })
                    .collect();
                v.sort();
                v
            };
            proptest::prop_assert_eq!(rows_of(&back), rows_of(&m));
        }
    }

    #[test]
    fn id_maps_refuse_repeated_ids() {
        let map = IdMap::from_ids(vec!["a".into(), "b".into()]).unwrap();
        assert_eq!(map.get("b"), Some(1));
        assert!(IdMap::from_ids(vec!["a".into(), "b".into(), "a".into()]).is_none());
    }

    #[test]
    fn duplicates_sum_and_non_positive_pairs_drop() {
        let mut b = InteractionsBuilder::new();
        b.add("a", "x", 1.0, 5);
        b.add("a", "x", 2.0, 9);
        b.add("a", "y", 1.0, 1);
        b.add("a", "y", -1.0, 2);
        b.add("b", "x", 0.5, 3);
        let m = b.build().unwrap();
        assert_eq!(m.pairs().len(), 2);
        assert_eq!(m.pairs()[0].weight, 3.0);
        assert_eq!(m.pairs()[0].timestamp, 9);
        assert_eq!(m.n_items(), 2, "a dropped pair's item is still known");
        let t = m.user_items().transpose(m.n_items());
        assert_eq!(t.row(0), (&[0u32, 1][..], &[3.0f32, 0.5][..]));
    }

    #[test]
    fn overflowing_and_non_finite_weights_name_file_and_line() {
        // Each weight is finite; the pair's sum is not. Line 4 is the one that overflows.
        let text = "user,item,weight\na,x,3e38\nb,x,1\na,x,3e38\na,y,1\n";
        let err = Interactions::parse_csv(text.as_bytes(), "big.csv").unwrap_err();
        assert!(
            matches!(&err, RecsysError::Malformed { path, line: 4, .. } if path == "big.csv"),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("big.csv:4: weight 3e38 brings"),
            "{err}"
        );
        assert!(
            err.to_string().contains("past the largest finite f32"),
            "{err}"
        );
        // The same through events: a line number, no user id in the message.
        let mut b = InteractionsBuilder::named("mem");
        b.at_line(7);
        b.add("secret-user", "x", f32::INFINITY, 0);
        let err = b.build().unwrap_err();
        assert_eq!(err.to_string(), "mem:7: weight inf is not a finite number");
        let mut b = InteractionsBuilder::new();
        b.add("u", "x", f32::MAX, 0);
        b.add("u", "x", f32::MAX, 0);
        let err = b.build().unwrap_err();
        assert!(err.to_string().starts_with("<input>:2: "), "{err}");
    }

    #[test]
    fn csv_columns_in_any_order_and_defaults() {
        let text = "item,user\nx,a\ny,a\nx,b\n";
        let m = Interactions::parse_csv(text.as_bytes(), "t.csv").unwrap();
        assert_eq!(m.pairs().len(), 3);
        assert!(m.pairs().iter().all(|p| p.weight == 1.0));
        assert_eq!(m.users.id(m.pairs()[2].user), "b");
    }

    #[test]
    fn csv_errors_name_the_line() {
        let err =
            Interactions::parse_csv("user,item,weight\na,x,1\nb,y,heavy\n".as_bytes(), "t.csv")
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv:3: weight \"heavy\" is not a finite number"
        );
        let err = Interactions::parse_csv("user,item\na,x,3\n".as_bytes(), "t.csv").unwrap_err();
        assert!(err.to_string().starts_with("t.csv:2:"), "{err}");
        let err = Interactions::parse_csv("who,what\n".as_bytes(), "t.csv").unwrap_err();
        assert!(err.to_string().contains("must name the columns"), "{err}");
        let err =
            Interactions::parse_csv("user,item,country\na,x,ZZ\n".as_bytes(), "t.csv").unwrap_err();
        assert!(err.to_string().contains("\"ZZ\""), "{err}");
    }

    #[test]
    fn events_are_weighted_and_errors_name_the_line() {
        let text = concat!(
            r#"{"user":"u","video":"v","kind":"view","watch_ms":5000,"duration_ms":10000,"timestamp":1,"country":"US","creator":"c"}"#,
            "\n",
            r#"{"user":"u","video":"v","kind":"like","timestamp":2}"#,
            "\n",
            r#"{"user":"u","video":"w","kind":"skip","timestamp":3}"#,
            "\n"
        );
        let m =
            Interactions::parse_events(text.as_bytes(), "e.jsonl", &ConfidenceWeights::default())
                .unwrap();
        assert_eq!(m.pairs().len(), 1);
        assert_eq!(m.pairs()[0].weight, 2.5);
        assert_eq!(m.user_country[0].unwrap().as_str(), "US");
        let err =
            Interactions::parse_events("{}\n".as_bytes(), "e.jsonl", &ConfidenceWeights::default())
                .unwrap_err();
        assert!(
            err.to_string().starts_with("e.jsonl:1: not an event"),
            "{err}"
        );
        // A value of the wrong type is named by position, not quoted.
        let wrong =
            r#"{"user":"secret-user-5","video":"v","kind":"view","timestamp":"secret-time"}"#;
        let err =
            Interactions::parse_events(wrong.as_bytes(), "e.jsonl", &ConfidenceWeights::default())
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("e.jsonl:1: not an event (Data error"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
    }
}
