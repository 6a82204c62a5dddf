//! Reading a log as an auditor does: filters, the question "did this entry touch this person?"
//! (answered for bulk entries with a proof against the subject set they commit to), and the
//! table and CSV lines of `domicile audit query`, so that every tool prints entries the same way.

use std::collections::BTreeMap;
use std::path::Path;

use domicile_residency::{JustificationCode, RuleId};

use crate::subjects::read_subject_set;
use crate::{AuditError, Entry, Pseudonym, SetRoot, SubjectSet, SubjectSetProof, Target};

/// Which entries to keep. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this principal id.
    pub principal: Option<String>,
    /// Only this subject pseudonym.
    pub subject: Option<Pseudonym>,
    /// Only entries at or after this time (ms since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Only entries before this time (ms since the Unix epoch).
    pub until_ms: Option<u64>,
    /// Only allowed (`true`) or only denied (`false`) accesses.
    pub allowed: Option<bool>,
    /// Only entries decided by this rule.
    pub rule: Option<RuleId>,
    /// Only this justification code.
    pub purpose: Option<JustificationCode>,
}

impl Filter {
    /// Whether `e` passes the filter. The subject is matched against the entry's own subject
    /// field only; [`touched`] also finds the bulk entries whose subject set holds them.
    pub fn matches(&self, e: &Entry) -> bool {
        self.subject.is_none_or(|s| e.resource.subject == Some(s)) && self.matches_but_subject(e)
    }

    /// Whether `e` passes every part of the filter but the subject.
    pub fn matches_but_subject(&self, e: &Entry) -> bool {
        self.principal.as_ref().is_none_or(|p| &e.principal.id == p)
            && self.since_ms.is_none_or(|t| e.time_ms >= t)
            && self.until_ms.is_none_or(|t| e.time_ms < t)
            && self.allowed.is_none_or(|a| e.decision.allowed == a)
            && self
                .rule
                .as_ref()
                .is_none_or(|r| e.decision.rules.contains(r))
            && self.purpose.is_none_or(|p| e.purpose.code == p)
    }
}

/// How an entry touched a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    /// The entry names the subject in its own subject field.
    Named,
    /// The subject is in the entry's subject set: the proof, verified against the entry's
    /// commitment.
    InSet(SubjectSetProof),
}

impl Touch {
    /// A one-line account of the touch, for the query table.
    pub fn describe(&self) -> String {
        match self {
            Touch::Named => "named".into(),
            Touch::InSet(p) => format!(
                "leaf {} of {} in the subject set, proof of {} hashes verified",
                p.index,
                p.size,
                p.path.len()
            ),
        }
    }
}

/// The subject lists read so far, by root, so that a query reads each list once.
pub type SetCache = BTreeMap<SetRoot, SubjectSet>;

/// Whether entry `e` of the log in `dir` touched the subject `pseudonym`: named in the entry, or
/// in the subject set a bulk entry commits to. For a bulk entry the list kept beside the log is
/// read, checked against the entry's commitment, and the inclusion proof built and verified, so
/// the answer is the entry's (and so the signed log's), not the list file's. A list that is
/// missing or does not match is an error: "not in that access" could not be proven.
pub fn touched(
    dir: &Path,
    e: &Entry,
    pseudonym: &Pseudonym,
    cache: &mut SetCache,
) -> Result<Option<Touch>, AuditError> {
    if e.resource.subject == Some(*pseudonym) {
        return Ok(Some(Touch::Named));
    }
    let Target::Batch { subjects, .. } = &e.resource.target else {
        return Ok(None);
    };
    if subjects.count == 0 {
        return Ok(None);
    }
    let set = match cache.entry(subjects.root) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => e.insert(read_subject_set(dir, subjects)?),
    };
    let Some(proof) = set.prove(pseudonym) else {
        return Ok(None);
    };
    proof.verify(pseudonym, subjects)?;
    Ok(Some(Touch::InSet(proof)))
}

/// An entry's target as the query's table and CSV show it.
fn target_text(t: &Target) -> String {
    match t {
        Target::Record { key } => key.clone(),
        Target::Bulk { count } => format!("{count} records"),
        Target::Batch {
            count,
            subjects,
            parts,
        } => {
            let parts: Vec<String> = parts
                .iter()
                .map(|p| format!("{} {}/{}", p.records, p.class.as_str(), p.collection))
                .collect();
            format!(
                "{count} records of {} subjects ({})",
                subjects.count,
                parts.join(", ")
            )
        }
    }
}

/// The column titles of the query table.
const TABLE_TITLES: [&str; 9] = [
    "SEQ",
    "TIME",
    "PRINCIPAL",
    "ACTION",
    "CLASS",
    "SUBJECT",
    "ALLOW",
    "RULE",
    "PURPOSE",
];

/// One entry as the cells of the query table.
fn table_cells(e: &Entry) -> [String; 9] {
    let subject = match (&e.resource.subject, &e.resource.target) {
        (Some(s), _) => s.to_string()[..16].to_owned(),
        (None, Target::Batch { subjects, .. }) => format!("{} subjects", subjects.count),
        (None, _) => "-".to_owned(),
    };
    let rules: Vec<&str> = e.decision.rules.iter().map(RuleId::as_str).collect();
    [
        e.seq.to_string(),
        rfc3339(e.time_ms),
        e.principal.id.clone(),
        e.action.as_str().to_owned(),
        e.resource.class.as_str().to_owned(),
        subject,
        (if e.decision.allowed { "yes" } else { "no" }).to_owned(),
        rules.join(" "),
        e.purpose.to_string(),
    ]
}

/// The query table of `entries`, header first, every column as wide as its widest cell (so the
/// columns line up whatever the principals, actions and rules are). Ends in a newline.
pub fn table(entries: &[Entry]) -> String {
    let rows: Vec<Vec<String>> = entries.iter().map(|e| table_cells(e).to_vec()).collect();
    render(&TABLE_TITLES, &rows)
}

/// The query table of the entries that touched one subject, with a last column saying how each
/// touched them ([`Touch::describe`]).
pub fn table_with_touches(entries: &[(Entry, Touch)]) -> String {
    let mut titles = TABLE_TITLES.to_vec();
    titles.push("HOW");
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|(e, t)| {
            let mut row = table_cells(e).to_vec();
            row.push(t.describe());
            row
        })
        .collect();
    render(&titles, &rows)
}

/// Lays out `rows` under `titles`: the first column right-aligned, the last unpadded.
fn render(titles: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = titles.iter().map(|t| t.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let last = titles.len() - 1;
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            if i == 0 {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else if i == last {
                out.push_str("  ");
                out.push_str(cell);
            } else {
                out.push_str("  ");
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&mut titles.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// The header of the CSV `domicile audit query --format csv` prints.
pub const CSV_HEADER: &str = "seq,time,principal,organisation,action,class,collection,subject,target,allowed,rules,purpose,ticket,request_id";

/// One entry as a CSV line (RFC 4180 quoting).
pub fn csv_row(e: &Entry) -> String {
    let target = target_text(&e.resource.target);
    let rules: Vec<&str> = e.decision.rules.iter().map(RuleId::as_str).collect();
    let fields = [
        e.seq.to_string(),
        rfc3339(e.time_ms),
        e.principal.id.clone(),
        e.principal.organisation.clone(),
        e.action.as_str().to_owned(),
        e.resource.class.as_str().to_owned(),
        e.resource.collection.clone(),
        e.resource
            .subject
            .map(|s| s.to_string())
            .unwrap_or_default(),
        target,
        e.decision.allowed.to_string(),
        rules.join(" "),
        e.purpose.code.as_str().to_owned(),
        e.purpose.ticket.clone().unwrap_or_default(),
        e.request_id.clone(),
    ];
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01 (`days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3600,
        t / 60 % 60,
        t % 60,
        ms % 1000
    )
}

/// Milliseconds since the epoch, given as such or as `YYYY-MM-DDTHH:MM:SS[.mmm]Z`; `None` for
/// anything else.
pub fn parse_time(text: &str) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    let t = text.strip_suffix('Z')?;
    let (date, clock) = t.split_once('T')?;
    let nums = |s: &str, sep| -> Option<Vec<u64>> {
        s.split(sep).map(|p| p.parse::<u64>().ok()).collect()
    };
    let (clock, millis) = match clock.split_once('.') {
        Some((c, f)) => (c, f.parse::<u64>().ok()?),
        None => (clock, 0),
    };
    let (d, c) = (nums(date, '-')?, nums(clock, ':')?);
    let (&[y, mo, da], &[h, mi, s]) = (&d[..], &c[..]) else {
        return None;
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, da as u32);
    let secs = u64::try_from(days * 86_400).ok()? + h * 3600 + mi * 60 + s;
    Some(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_750_000_000_123), "2025-06-15T15:06:40.123Z");
        for ms in [0u64, 951_782_400_000, 1_750_000_000_123, 4_102_444_800_000] {
            assert_eq!(parse_time(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2025-13-01T00:00:00Z"), None);
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn the_table_columns_line_up_whatever_their_contents() {
        let short = crate::doc_example_entry().unwrap();
        let mut long = short.clone();
        long.principal.id = "spiffe://domicile.example/row/bytedance-sg/a-very-long-name".into();
        long.action = crate::Action::ApprovalGrant;
        let text = table(&[short, long]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        // Every column after the first starts at the same offset on every line.
        for title in ["TIME", "PRINCIPAL", "ACTION", "CLASS", "RULE", "PURPOSE"] {
            let at = lines[0].find(title).unwrap();
            for l in &lines[1..] {
                assert_eq!(&l[at - 2..at], "  ", "{title} in {l:?}");
                assert_ne!(&l[at..at + 1], " ", "{title} in {l:?}");
            }
        }
    }
}
