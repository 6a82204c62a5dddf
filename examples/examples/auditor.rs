//! The auditor's walkthrough: a region writes its access log, witnesses cosign it, an auditor
//! verifies it with public keys only, and then finds the damage in tampered copies.
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
    prove, verify, Action, AuditKey, AuditLog, Checkpoint, Entry, EntryDecision, InclusionProof,
    KeyKind, LogConfig, Outcome, Principal, Resource, ResultDigest, SigningKey, Target, Witness,
    WitnessPolicy,
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
        witnesses.push(w.verifier());
    }
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

    // 6. Tampered copies: one changed byte, and the last entries removed.
    let changed = dir.join("tampered-byte");
    copy_dir(&dir.join("log"), &changed)?;
    let seg = first_segment(&changed)?;
    let mut bytes = std::fs::read(&seg)?;
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&seg, bytes)?;
    match verify(&changed, &vkey, None, &mut |_, _| {}) {
        Ok(_) => return Err("verify missed a changed byte".into()),
        Err(e) => println!("\nverify {}: FAILED as it should: {e}", changed.display()),
    }

    let truncated = dir.join("tampered-truncated");
    copy_dir(&dir.join("log"), &truncated)?;
    let seg = first_segment(&truncated)?;
    let bytes = std::fs::read(&seg)?;
    std::fs::write(&seg, &bytes[..bytes.len() - 600])?;
    match verify(&truncated, &vkey, None, &mut |_, _| {}) {
        Ok(_) => return Err("verify missed a truncation".into()),
        Err(e) => println!("verify {}: FAILED as it should: {e}", truncated.display()),
    }

    let cp = Checkpoint::parse(&cosigned.text)?;
    println!("\nnow try the command line:");
    println!(
        "  domicile audit verify --log {} --vkey {}",
        dir.join("log").display(),
        keys.join("log.vkey").display()
    );
    println!(
        "  domicile audit verify --log {} --vkey {}",
        changed.display(),
        keys.join("log.vkey").display()
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
            target: Target::Record {
                key: format!("{subject}/profile"),
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
