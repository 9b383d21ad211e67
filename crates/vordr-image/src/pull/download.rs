//! Blob downloads into the content store, layers unpacked as they land, the progress watchdog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_client::manifest::OciDescriptor;
use oci_client::{Client, Reference};

use super::error::{stream_error, Fetch};
use super::Puller;
use crate::content::{ContentError, Digest};
use crate::snapshots::SnapshotError;

/// When a pull last moved data, for its watchdog: every chunk received
/// from the registry and every read of the unpacker counts, so a pull whose
/// unpacker is busy (and so reads nothing off the network) is not stalled.
#[derive(Clone)]
pub(super) struct Progress {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    pub(super) fn new() -> Progress {
        Progress {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(super) fn tick(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Returns once nothing has moved for `timeout`.
    pub(super) async fn stalled(&self, timeout: Duration) {
        loop {
            let idle = self.idle();
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }
}

/// A reader that counts as progress.
struct ProgressReader<R> {
    inner: R,
    progress: Progress,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.tick();
        Ok(n)
    }
}

impl Puller {
    /// Makes the snapshot of one layer. A blob not yet stored is unpacked
    /// while it downloads: the chunks go to the content store's ingest and
    /// to the unpacker at once, and the snapshot becomes visible only after
    /// the ingest verified the blob (and the unpacker its diff id).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fetch_and_unpack(
        &self,
        client: &Client,
        r: &Reference,
        desc: &OciDescriptor,
        layer: &Digest,
        diff: &Digest,
        chain: &Digest,
        progress: &Progress,
    ) -> Result<(), Fetch> {
        let snaps = self.snapshots.clone();
        let (chain, diff) = (chain.clone(), diff.clone());
        let unpacker_progress = progress.clone();
        if self.content.contains(layer) {
            let path = self.content.path(layer);
            return tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&path)
                    .map_err(|source| SnapshotError::Io { path, source })?;
                let r = ProgressReader {
                    inner: f,
                    progress: unpacker_progress,
                };
                snaps.create(&chain, &diff, std::io::BufReader::new(r))
            })
            .await
            .map_err(|e| Fetch::Task(e.to_string()))?
            .map(|_| ())
            .map_err(Fetch::Snapshot);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (verdict_tx, verdict_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let unpack = tokio::task::spawn_blocking(move || {
            let reader = ProgressReader {
                inner: ChunkReader {
                    rx,
                    chunk: bytes::Bytes::new(),
                },
                progress: unpacker_progress,
            };
            let verified = move || {
                verdict_rx
                    .recv()
                    .unwrap_or_else(|_| Err("the download stopped".into()))
            };
            snaps.create_gated(&chain, &diff, std::io::BufReader::new(reader), verified)
        });
        let downloaded = self
            .download(client, r, desc, layer, Some(tx), progress)
            .await;
        let _ = verdict_tx.send(match &downloaded {
            Ok(()) => Ok(()),
            Err(_) => Err(format!("blob {layer} failed to download or verify")),
        });
        let unpacked = unpack.await.map_err(|e| Fetch::Task(e.to_string()))?;
        // The download's own failure explains more than the unpacker's.
        downloaded?;
        unpacked.map(|_| ()).map_err(Fetch::Snapshot)
    }

    /// Downloads a blob into the content store, reading no more than its
    /// descriptor's size, and hands each chunk to `tee` as well (until its
    /// reader goes away). Dropped midway, it leaves no ingest file.
    pub(super) async fn download(
        &self,
        client: &Client,
        r: &Reference,
        desc: &OciDescriptor,
        digest: &Digest,
        tee: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
        progress: &Progress,
    ) -> Result<(), Fetch> {
        use futures::StreamExt;
        use std::io::Write;
        let size = (desc.size >= 0).then_some(desc.size as u64);
        let mut ingest = self
            .content
            .ingest(digest.clone(), size)
            .map_err(Fetch::Content)?;
        let mut blob = client.pull_blob_stream(r, desc).await.map_err(Fetch::Oci)?;
        progress.tick();
        let mut tee = tee;
        while let Some(chunk) = blob.stream.next().await {
            let chunk = chunk.map_err(stream_error)?;
            progress.tick();
            let actual = ingest.written() + chunk.len() as u64;
            if let Some(expected) = size.filter(|&max| actual > max) {
                return Err(Fetch::Content(ContentError::SizeMismatch {
                    digest: digest.clone(),
                    expected,
                    actual,
                }));
            }
            ingest.write_all(&chunk).map_err(|source| {
                Fetch::Content(ContentError::Io {
                    path: self.content.path(digest),
                    source,
                })
            })?;
            if let Some(t) = &tee {
                if t.send(chunk).await.is_err() {
                    // The unpacker stopped (bad layer); its error will tell.
                    tee = None;
                }
            }
        }
        drop(tee);
        tokio::task::spawn_blocking(move || ingest.commit())
            .await
            .map_err(|e| Fetch::Task(e.to_string()))?
            .map(|_| ())
            .map_err(Fetch::Content)
    }
}

/// A blob stream as `Read`, for the unpacker on a blocking thread: chunks
/// arrive from the download as they land.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    chunk: bytes::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(c) => self.chunk = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        Ok(n)
    }
}
