//! Image rows: which config digest each tag and repo digest names, and
//! which blobs and snapshots each image holds.

use rusqlite::{params, OptionalExtension, Row};

use crate::{Result, Store, StoreError};

/// An image as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The config digest, `sha256:...`.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
    /// Compressed layer blob digests, bottom first.
    pub layers: Vec<String>,
    /// Snapshot chain ids, bottom first.
    pub chain_ids: Vec<String>,
    pub pinned: bool,
    pub pulled_at: i64,
    /// The image config's `User` (`uid`, `name`, `uid:gid`, ... or empty).
    pub user: String,
    /// The image manifest's annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
}

fn list(json: &str, id: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        table: "images",
        reason: format!("image {id}: {e}"),
    })
}

fn to_json(v: &[String]) -> String {
    serde_json::to_string(v).expect("strings serialise")
}

const COLUMNS: &str =
    "id, repo_tags, repo_digests, size, layers, chain_ids, pinned, pulled_at, user, annotations";

type RawImage = (
    String,
    String,
    String,
    i64,
    String,
    String,
    bool,
    i64,
    String,
    String,
);

fn raw(r: &Row<'_>) -> rusqlite::Result<RawImage> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn record(r: RawImage) -> Result<ImageRecord> {
    let (id, tags, digests, size, layers, chains, pinned, pulled_at, user, annotations) = r;
    let annotations = serde_json::from_str(&annotations).map_err(|e| StoreError::Corrupt {
        table: "images",
        reason: format!("image {id}: {e}"),
    })?;
    Ok(ImageRecord {
        repo_tags: list(&tags, &id)?,
        repo_digests: list(&digests, &id)?,
        size: size.max(0) as u64,
        layers: list(&layers, &id)?,
        chain_ids: list(&chains, &id)?,
        pinned,
        pulled_at,
        user,
        annotations,
        id,
    })
}

impl Store {
    /// Records a pulled image: adds its tag and repo digest, takes the tag
    /// away from any other image (a tag names one image), and drops images
    /// left with no name at all. Returns the ids of the dropped images.
    pub fn put_image(&self, img: &ImageRecord) -> Result<Vec<String>> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut all = {
            let mut st = tx.prepare_cached(&format!("SELECT {COLUMNS} FROM images"))?;
            let rows = st
                .query_map([], raw)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(record).collect::<Result<Vec<_>>>()?
        };
        let mut dropped = Vec::new();
        for other in all.iter_mut().filter(|o| o.id != img.id) {
            let before = other.repo_tags.len();
            other.repo_tags.retain(|t| !img.repo_tags.contains(t));
            if other.repo_tags.len() == before {
                continue;
            }
            if other.repo_tags.is_empty() && other.repo_digests.is_empty() {
                tx.execute("DELETE FROM images WHERE id = ?1", [&other.id])?;
                dropped.push(other.id.clone());
            } else {
                tx.execute(
                    "UPDATE images SET repo_tags = ?2 WHERE id = ?1",
                    params![other.id, to_json(&other.repo_tags)],
                )?;
            }
        }
        let mut merged = img.clone();
        if let Some(existing) = all.iter().find(|o| o.id == img.id) {
            for t in &existing.repo_tags {
                if !merged.repo_tags.contains(t) {
                    merged.repo_tags.push(t.clone());
                }
            }
            for d in &existing.repo_digests {
                if !merged.repo_digests.contains(d) {
                    merged.repo_digests.push(d.clone());
                }
            }
            merged.pinned |= existing.pinned;
        }
        merged.repo_tags.sort();
        merged.repo_digests.sort();
        tx.execute(
            &format!(
                "INSERT INTO images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(id) DO UPDATE SET repo_tags = excluded.repo_tags,
                    repo_digests = excluded.repo_digests, size = excluded.size,
                    layers = excluded.layers, chain_ids = excluded.chain_ids,
                    pinned = excluded.pinned, pulled_at = excluded.pulled_at,
                    user = excluded.user, annotations = excluded.annotations"
            ),
            params![
                merged.id,
                to_json(&merged.repo_tags),
                to_json(&merged.repo_digests),
                merged.size as i64,
                to_json(&merged.layers),
                to_json(&merged.chain_ids),
                merged.pinned,
                merged.pulled_at,
                merged.user,
                serde_json::to_string(&merged.annotations).expect("strings serialise")
            ],
        )?;
        tx.commit()?;
        Ok(dropped)
    }

    /// Every image.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM images ORDER BY pulled_at, id"
        ))?;
        let rows = st
            .query_map([], raw)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(record).collect()
    }

    /// The image with this id.
    pub fn get_image(&self, id: &str) -> Result<Option<ImageRecord>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM images WHERE id = ?1"))?;
        st.query_row([id], raw).optional()?.map(record).transpose()
    }

    /// Deletes an image row; a missing one is success.
    pub fn delete_image(&self, id: &str) -> Result<()> {
        self.lock()
            .execute("DELETE FROM images WHERE id = ?1", [id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, tag: &str, digest: &str) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            repo_tags: vec![tag.into()],
            repo_digests: vec![digest.into()],
            size: 10,
            layers: vec!["sha256:l".into()],
            chain_ids: vec!["sha256:c".into()],
            pinned: false,
            pulled_at: 1,
            user: "1000".into(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn tags_move_and_names_merge() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        assert!(s
            .put_image(&img("sha256:a", "x:1", "x@sha256:ma"))
            .unwrap()
            .is_empty());
        // Same image under a second tag: merged.
        s.put_image(&img("sha256:a", "x:latest", "x@sha256:ma"))
            .unwrap();
        let a = s.get_image("sha256:a").unwrap().unwrap();
        assert_eq!(a.repo_tags, vec!["x:1", "x:latest"]);
        assert_eq!(a.repo_digests, vec!["x@sha256:ma"]);
        // x:latest moves to a new image; a keeps x:1.
        s.put_image(&img("sha256:b", "x:latest", "x@sha256:mb"))
            .unwrap();
        assert_eq!(
            s.get_image("sha256:a").unwrap().unwrap().repo_tags,
            vec!["x:1"]
        );
        // An image left with no tag keeps its repo digest (pull by digest still names it).
        s.put_image(&img("sha256:c", "x:1", "x@sha256:mc")).unwrap();
        let a = s.get_image("sha256:a").unwrap().unwrap();
        assert!(a.repo_tags.is_empty());
        assert_eq!(a.repo_digests, vec!["x@sha256:ma"]);
        // One without tag nor digest is dropped.
        let mut bare = img("sha256:d", "y:1", "");
        bare.repo_digests.clear();
        s.put_image(&bare).unwrap();
        let mut e = img("sha256:e", "y:1", "y@sha256:me");
        e.pinned = true;
        assert_eq!(s.put_image(&e).unwrap(), vec!["sha256:d".to_string()]);
        assert_eq!(s.get_image("sha256:d").unwrap(), None);
        assert_eq!(s.list_images().unwrap().len(), 4);
        s.delete_image("sha256:e").unwrap();
        s.delete_image("sha256:e").unwrap();
        assert_eq!(s.list_images().unwrap().len(), 3);
    }
}
