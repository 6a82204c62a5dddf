//! The auditor's walkthrough: a region writes its access log, witnesses cosign it, an auditor
//! verifies it with public keys only, and then finds the damage in tampered copies: one for each
//! layer of verification (frame checksum, Merkle root, checkpoint signature, consistency with a
//! held checkpoint, witness quorum), each tampering crafted to pass every layer before the one
//! that catches it, so that each layer is shown to do work of its own.
//!
//! ```text
//! cargo run --example auditor -- --dir /tmp/auditor
//! ```
//!
//! Afterwards the same checks run from the command line, e.g.
//! `domicile audit verify --log /tmp/auditor/log --vkey /tmp/auditor/keys/log.vkey`.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use domicile_audit::{
    prove, stored_checkpoints, verify, verify_against, Action, AuditKey, AuditLog, Checkpoint,
    Entry, EntryDecision, InclusionProof, KeyKind, LogConfig, Note, Outcome, Principal, Resource,
    ResultDigest, SigningKey, Target, Witness, WitnessPolicy,
};
use domicile_residency::{
    CountryCode, DataClass, JustificationCode, Obligation, PolicyId, Purpose, Region, RuleId,
    SubjectId,
};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = parse_dir()?;
    if dir.join("log").exists() {
        return Err(format!("{} already holds a log; give an empty --dir", dir.display()).into());
    }
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;

    // The region's keys: the log's signing key and its audit key for pseudonyms.
    let log_key = SigningKey::generate("audit.example.com/us", KeyKind::Ed25519)?;
    let vkey = log_key.verifier();
    let audit_key = AuditKey::generate()?;
    std::fs::write(keys.join("log.vkey"), format!("{vkey}\n"))?;
    std::fs::write(keys.join("audit.key"), format!("{}\n", audit_key.to_hex()))?;
    println!("log verifier key: {vkey}");

    // 1. The region appends 2,000 access decisions from 8 threads, as its gate would.
    let log_key_text = log_key.to_private_text();
    let mut config = LogConfig::new(log_key);
    config.checkpoint_every = 500;
    let log = Arc::new(AuditLog::open(dir.join("log"), config)?);
    let writers: Vec<_> = (0..8u64)
        .map(|t| {
            let log = Arc::clone(&log);
            let audit_key = AuditKey::parse(&audit_key.to_hex());
            std::thread::spawn(move || -> Result<(), String> {
                let audit_key = audit_key.map_err(|e| e.to_string())?;
                for i in 0..250 {
                    let entry = access(t * 250 + i, &audit_key).map_err(|e| e.to_string())?;
                    log.append(entry).map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect();
    for w in writers {
        w.join().map_err(|_| "a writer thread panicked")??;
    }

    // 2. Two independent witnesses cosign the latest checkpoint.
    let note = log.checkpoint()?.ok_or("no checkpoint")?;
    let mut witnesses = Vec::new();
    let mut cosigned = note.clone();
    for (file, name) in [
        ("witness-a", "witness.example.org/a"),
        ("witness-b", "witness.example.net/b"),
    ] {
        let w = Witness::new(
            SigningKey::generate(name, KeyKind::Cosignature)?,
            vkey.clone(),
            None,
        )?;
        cosigned.signatures.push(w.cosign(&note, &[], unix_now())?);
        std::fs::write(
            keys.join(format!("{file}.vkey")),
            format!("{}\n", w.verifier()),
        )?;
        witnesses.push(w);
    }
    let witness_a = witnesses.remove(0);
    let witnesses = vec![witness_a.verifier(), witnesses[0].verifier()];
    log.add_cosigned(&cosigned)?;
    log.close()?;
    println!("\nlatest checkpoint, cosigned:\n{}", cosigned.to_text());

    // 3. The auditor verifies with public keys only.
    let policy = WitnessPolicy::new(witnesses, 2)?;
    let report = verify(&dir.join("log"), &vkey, Some(&policy), &mut |_, _| {})?;
    println!(
        "verify: OK, {} entries, {} checkpoints, {} witnesses",
        report.entries, report.checkpoints, report.witnesses
    );

    // 4. An inclusion proof for one entry, checked offline; it carries the entry itself.
    let proof = prove(&dir.join("log"), 1234)?;
    std::fs::write(dir.join("entry-1234.tlog-proof"), proof.to_text())?;
    let entry = InclusionProof::parse(&proof.to_text())?.check(&vkey, Some(&policy))?;
    println!(
        "proof of entry 1234: OK ({} {} {} by {}, decided by {})",
        entry.action.as_str(),
        entry.resource.class,
        entry.resource.collection,
        entry.principal.id,
        entry.decision.rules[0]
    );

    // 5. Given a subject id, the auditor holding the audit key finds that subject's lines.
    let subject = SubjectId::parse("user-17")?;
    let pseudonym = audit_key.pseudonym(&subject);
    let mut lines = 0;
    domicile_audit::for_each_entry(&dir.join("log"), &mut |_, _| {}, |_, bytes, _| {
        if Entry::from_canonical(bytes)?.resource.subject == Some(pseudonym) {
            lines += 1;
        }
        Ok(())
    })?;
    println!("user-17 is {pseudonym}: {lines} accesses");

    // 6. Tampered copies, one per layer of verification, each crafted to pass every layer
    //    before the one that catches it. The tampering: entry TAMPERED's decision is flipped.
    println!("\nfive tamperings, each caught by its own layer:");
    let log_dir = dir.join("log");
    let held = held_checkpoint(&log_dir)?;
    let held_size = Checkpoint::parse(&held.text)?.size;

    // Layer 1, the frame checksum: one byte changed in place.
    let changed = dir.join("tampered-1-frame");
    copy_dir(&log_dir, &changed)?;
    let seg = first_segment(&changed)?;
    let mut bytes = std::fs::read(&seg)?;
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&seg, bytes)?;
    caught(
        "1 frame checksum",
        &changed,
        verify(&changed, &vkey, None, &mut |_, _| {}),
    )?;

    // Layer 2, the Merkle root: the entry re-encoded and its frame's checksum recomputed, so
    // every frame holds; the entries no longer hash to the root the checkpoints sign.
    let reframed = dir.join("tampered-2-merkle");
    copy_dir(&log_dir, &reframed)?;
    rewrite_entry(&first_segment(&reframed)?, TAMPERED, &flip_decision)?;
    caught(
        "2 Merkle root",
        &reframed,
        verify(&reframed, &vkey, None, &mut |_, _| {}),
    )?;

    // Layer 3, the checkpoint signature: the whole log rebuilt with the tampered entry, frames
    // and roots all consistent, its checkpoints signed by a key of the same name that is not
    // the log's.
    let resigned = dir.join("tampered-3-signature");
    let impostor = SigningKey::generate(vkey.name(), KeyKind::Ed25519)?;
    rebuild(&log_dir, &resigned, impostor, 2_000)?;
    caught(
        "3 checkpoint signature",
        &resigned,
        verify(&resigned, &vkey, None, &mut |_, _| {}),
    )?;

    // Layer 4, consistency with a held checkpoint: the region itself rewrites history with its
    // real key. The fork verifies on its own; the checkpoint of size {held_size} the auditor
    // kept from an earlier audit pins the log, and the fork does not extend it.
    let forked = dir.join("tampered-4-fork");
    let real = SigningKey::parse(&log_key_text)?;
    let fork_note = rebuild(&log_dir, &forked, real, held_size + 100)?;
    let alone = verify(&forked, &vkey, None, &mut |_, _| {})?;
    println!(
        "   the fork verifies on its own ({} entries, signed by the log's key), but:",
        alone.entries
    );
    caught(
        "4 consistency with the held checkpoint",
        &forked,
        verify_against(
            &forked,
            &vkey,
            None,
            std::slice::from_ref(&held),
            &mut |_, _| {},
        ),
    )?;

    // Layer 5, the witness quorum: an auditor holding no checkpoint asks for two witnesses.
    // The real witnesses refuse to cosign the fork (it does not extend what they cosigned); the
    // region has it cosigned by a key of its own under witness a's name, which does not count.
    match witness_a.cosign(&fork_note, &[], unix_now()) {
        Ok(_) => return Err("a witness cosigned a fork".into()),
        Err(e) => println!("   witness a refuses the fork: {e}"),
    }
    let fake_a = Witness::new(
        SigningKey::generate("witness.example.org/a", KeyKind::Cosignature)?,
        vkey.clone(),
        None,
    )?;
    let mut fork_cosigned = fork_note.clone();
    fork_cosigned
        .signatures
        .push(fake_a.cosign(&fork_note, &[], unix_now())?);
    let fork_log = AuditLog::open(&forked, {
        let mut c = LogConfig::new(SigningKey::parse(&log_key_text)?);
        c.checkpoint_interval = None;
        c
    })?;
    fork_log.add_cosigned(&fork_cosigned)?;
    fork_log.close()?;
    drop(fork_log);
    caught(
        "5 witness quorum",
        &forked,
        verify(&forked, &vkey, Some(&policy), &mut |_, _| {}),
    )?;

    let cp = Checkpoint::parse(&cosigned.text)?;
    println!("\nnow try the command line:");
    println!(
        "  domicile audit verify --log {} --vkey {}",
        dir.join("log").display(),
        keys.join("log.vkey").display()
    );
    std::fs::write(dir.join("held.checkpoint"), held.to_text())?;
    println!(
        "  domicile audit verify --log {} --vkey {} --checkpoint {}",
        forked.display(),
        keys.join("log.vkey").display(),
        dir.join("held.checkpoint").display()
    );
    println!(
        "  domicile audit check-proof --vkey {} {}",
        keys.join("log.vkey").display(),
        dir.join("entry-1234.tlog-proof").display()
    );
    println!("(the checkpoint above covers {} entries)", cp.size);
    Ok(())
}

/// An auditor verifies a region's access log and its proofs with the public key only, then
/// catches a tampered copy.
#[derive(Debug, clap::Parser)]
#[command(name = "auditor")]
struct Args {
    /// An empty directory to write the log, its keys and the tampered copy into.
    #[arg(long)]
    dir: PathBuf,
}

fn parse_dir() -> Result<PathBuf, Box<dyn Error>> {
    use clap::Parser;
    Ok(Args::parse().dir)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The entry every tampering changes.
const TAMPERED: u64 = 700;

/// The tampering: the entry's decision is flipped (a denial made to read as allowed, or an
/// allowed access as denied).
fn flip_decision(e: &mut Entry) {
    e.decision.allowed = !e.decision.allowed;
}

/// Prints how verification of `dir` failed, or fails if it did not.
fn caught<T>(
    layer: &str,
    dir: &Path,
    result: Result<T, domicile_audit::AuditError>,
) -> Result<(), Box<dyn Error>> {
    match result {
        Ok(_) => Err(format!("layer {layer}: verify missed {}", dir.display()).into()),
        Err(e) => {
            println!(
                "   layer {layer}: {} FAILED as it should: {e}",
                dir.display()
            );
            Ok(())
        }
    }
}

/// A checkpoint the auditor kept from an earlier audit: the first one covering the tampered
/// entry.
fn held_checkpoint(log: &Path) -> Result<Note, Box<dyn Error>> {
    for note in stored_checkpoints(log)? {
        if Checkpoint::parse(&note.text)?.size > TAMPERED {
            return Ok(note);
        }
    }
    Err("no checkpoint covers the tampered entry".into())
}

/// Re-encodes entry `seq` of a segment after `change`, and rewrites its frame with a correct
/// length and checksum (the first 8 bytes of its leaf hash), so that every frame holds.
fn rewrite_entry(
    segment: &Path,
    seq: u64,
    change: &dyn Fn(&mut Entry),
) -> Result<(), Box<dyn Error>> {
    const HEADER: usize = 16;
    let bytes = std::fs::read(segment)?;
    let mut out = bytes[..HEADER].to_vec();
    let mut at = HEADER;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into()?) as usize;
        let payload = &bytes[at + 12..at + 12 + len];
        let mut payload = payload.to_vec();
        if Entry::seq_of_canonical(&payload) == Some(seq) {
            let mut e = Entry::from_canonical(&payload)?;
            change(&mut e);
            payload = e.to_canonical()?;
        }
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&domicile_audit::merkle::leaf_hash(&payload)[..8]);
        out.extend_from_slice(&payload);
        at += 12 + len;
    }
    std::fs::write(segment, out)?;
    Ok(())
}

/// Builds, in `to`, a log of the first `size` entries of `from` with entry [`TAMPERED`]
/// changed, signed by `key`; returns its latest checkpoint.
fn rebuild(from: &Path, to: &Path, key: SigningKey, size: u64) -> Result<Note, Box<dyn Error>> {
    let mut entries = Vec::new();
    domicile_audit::for_each_entry(from, &mut |_, _| {}, |seq, bytes, _| {
        if seq < size {
            entries.push(Entry::from_canonical(bytes)?);
        }
        Ok(())
    })?;
    flip_decision(&mut entries[TAMPERED as usize]);
    let mut config = LogConfig::new(key);
    config.checkpoint_every = 500;
    config.checkpoint_interval = None;
    let log = Arc::new(AuditLog::open(to, config)?);
    // Appended from several threads in order of a shared counter, as a busy region would.
    let entries = Arc::new(entries);
    let next = Arc::new(std::sync::Mutex::new(0usize));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (log, entries, next) = (log.clone(), entries.clone(), next.clone());
            std::thread::spawn(move || -> Result<(), String> {
                loop {
                    // The lock is held across the append so that the order is kept; group
                    // commit still batches what the other threads queued meanwhile.
                    let mut n = next.lock().map_err(|_| "poisoned")?;
                    let Some(e) = entries.get(*n) else {
                        return Ok(());
                    };
                    *n += 1;
                    log.append(e.clone()).map_err(|e| e.to_string())?;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a thread panicked")??;
    }
    log.close()?;
    let note = log.latest_checkpoint().ok_or("no checkpoint")?;
    Ok(note)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

fn first_segment(log: &Path) -> std::io::Result<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(log.join("segments"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    segs.sort();
    segs.into_iter()
        .next()
        .ok_or_else(|| std::io::Error::other("no segment"))
}

/// A plausible access decision: US staff and a few outside engineers, mostly allowed.
fn access(i: u64, audit_key: &AuditKey) -> Result<Entry, Box<dyn Error>> {
    let outside = i.is_multiple_of(7);
    let (who, org, office) = if outside {
        (
            "spiffe://domicile.example/row/bytedance-eng/wei",
            "parent-eng",
            "SG",
        )
    } else {
        ("spiffe://domicile.example/us/ttusds/alice", "ttusds", "US")
    };
    let subject = SubjectId::parse(&format!("user-{}", i % 101))?;
    let allowed = !outside || i.is_multiple_of(2);
    let (rule, obligations) = match (outside, allowed) {
        (false, _) => ("us-split/access/staff-support-read", vec![]),
        (true, true) => (
            "us-split/excepted-crosses-deidentified",
            vec![Obligation::Pseudonymize],
        ),
        (true, false) => ("us-split/protected-rests-in-home-region", vec![]),
    };
    Ok(Entry {
        seq: 0,
        time_ms: 1_750_000_000_000 + i * 1500,
        region: Region::parse("us")?,
        principal: Principal {
            id: who.into(),
            organisation: org.into(),
            office_country: CountryCode::parse(office)?,
            location_country: CountryCode::parse(office)?,
        },
        action: if outside {
            Action::Export
        } else {
            Action::Read
        },
        resource: Resource {
            class: if outside {
                DataClass::Excepted
            } else {
                DataClass::Protected
            },
            collection: if outside {
                "engagement_metrics"
            } else {
                "profiles"
            }
            .into(),
            subject: Some(audit_key.pseudonym(&subject)),
            // Record keys embed user ids: the log holds their keyed pseudonym (invariant 6).
            target: Target::Record {
                key: audit_key
                    .record_key_pseudonym("profiles", &format!("{subject}/profile"))
                    .to_string(),
            },
        },
        purpose: Purpose::new(if outside {
            JustificationCode::ProductionIncident
        } else {
            JustificationCode::UserRequestedSupport
        })
        .with_ticket(format!("SUP-{}", 1000 + i)),
        approval: None,
        decision: EntryDecision {
            allowed,
            rules: vec![RuleId::parse(rule)?],
            obligations,
        },
        policy: PolicyId {
            name: "us-split".into(),
            version: "1.0.0".into(),
            digest: domicile_residency::Sha256Digest([0x5a; 32]),
        },
        request_id: format!("req-{i:06}"),
        outcome: if allowed {
            Outcome::Ok {
                result_digest: Some(ResultDigest([(i % 251) as u8; 32])),
            }
        } else {
            Outcome::Error {
                reason: "denied by policy".into(),
            }
        },
    })
}
