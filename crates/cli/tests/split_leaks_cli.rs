//! What `domicile split verify` prints when a deployment's files were tampered with: the problem,
//! by region and code or pseudonym, never a subject id or a record key (which often embeds one).

mod common;

use std::path::Path;

use common::{domicile, global_world, text};

fn swap_two_data_keys(keys: &Path, region: &str) {
    // The key store (redb) maps each subject's pseudonym to its wrapped data key: swap the
    // wrapped keys of two live entries, as a botched restore might.
    use redb::ReadableTable;
    const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("data_keys");
    let db = redb::Database::create(keys.join(region).join("datakeys.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(TABLE).unwrap();
        let live: Vec<(Vec<u8>, Vec<u8>)> = table
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .filter(|(_, v)| v.len() > 14 && v[5] == 1)
            .collect();
        assert!(live.len() >= 2, "{} live data keys", live.len());
        table
            .insert(live[0].0.as_slice(), live[1].1.as_slice())
            .unwrap();
        table
            .insert(live[1].0.as_slice(), live[0].1.as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn split_verify_names_no_subject_when_a_key_file_is_misplaced() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    global_world(&data, &keys);
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());
    let run = domicile(&[
        "split", "run", "--data", d, "--keys", k, "--to", "us-split", "--quiet",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    // Two of the us region's wrapped data keys swapped: each now sits where another subject's
    // key belongs.
    swap_two_data_keys(&keys, "us");
    let out = domicile(&["split", "verify", "--data", d, "--keys", k]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("us"), "the region is named: {said}");
    for id in ["user-0", "user-1", "user-2", "user-3"] {
        assert!(!said.contains(id), "{id} printed: {said}");
    }
}
