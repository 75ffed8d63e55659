//! A capture session: the one type that composes the recording file, the
//! frame store, the ring, the analyzers' socket and the persistence thread,
//! and owns their start and teardown order. The binary builds a
//! [`SessionConfig`] and hands it over.
//!
//! Start order, so that a failure leaves nothing behind: the recording is
//! created under a temporary name (or reopened with its lock), the store is
//! mapped, the socket is bound and listening, and only then is a new
//! recording linked into place and the persistence thread started.
//! Teardown order: the capture loop has released every claim; persistence
//! writes and syncs everything committed; analyzers are told the stream
//! ended; the socket is removed.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::capture::{self, Counters, Limits, LoopContext, Summary};
use crate::format::{FrameFormat, Header, Layout};
use crate::notify::{Access, Notifier, NotifierConfig, NotifyError};
use crate::persist::direct::{self, Queue, Recovered};
use crate::persist::writeback::{self, Placement};
use crate::persist::{PersistConfig, PersistStats, Persister};
use crate::protocol::{End, EndReason, Hello, STORE_MEMFD_RING, STORE_RECORDING_FILE};
use crate::recording::{self, Prealloc, RecordingError, RecordingFile};
use crate::ring::{CommitSink, Progress, Ring, RingStart};
use crate::service::{Notify, RING_FD_NAME};
use crate::source::FrameSource;
use crate::store::{FrameStore, RingSetup, StoreError, StoreKind};

/// How to get the recording.
#[derive(Clone, Debug)]
pub enum RecordingPlan {
    /// Create a new recording (the path must not exist).
    Create { header: Header, prealloc: Prealloc },
    /// Continue an existing one after its newest valid frame; create it
    /// with `create` if it does not exist (so a service can always resume).
    Resume { create: Option<(Header, Prealloc)> },
}

pub struct SessionConfig {
    pub output: PathBuf,
    pub plan: RecordingPlan,
    /// The source's format: a resumed recording must hold the same.
    pub format: FrameFormat,
    pub store: StoreKind,
    /// RAM ring slots (`StoreKind::Direct`).
    pub ram_slots: u32,
    /// File store: copy frames in with `pwrite` rather than the mapping.
    pub copy_by_pwrite: bool,
    pub socket: PathBuf,
    pub persist: PersistConfig,
    /// Drop an analyzer whose socket has stayed full this long.
    pub stuck_after: Duration,
    /// A dead capture's RAM ring, handed back by the service manager:
    /// its frames not yet in the recording are written first.
    pub recover_ring: Option<File>,
    /// The service manager (the RAM ring is put in its descriptor store).
    pub service: Arc<Notify>,
    /// Who may connect as an analyzer.
    pub access: Access,
    /// Serve at most this many analyzers.
    pub max_clients: usize,
    /// Give a new recording and the socket this group (analyzers run in
    /// it: they get read access, nobody else does).
    pub group: Option<u32>,
}

#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error("{path} holds {found} but the source delivers {wanted}")]
    FormatMismatch {
        path: PathBuf,
        found: FrameFormat,
        wanted: FrameFormat,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Socket(#[from] NotifyError),
    #[error("cannot start the persistence thread: {0}")]
    Thread(std::io::Error),
}

/// What setting up the session did, for the log.
#[derive(Debug)]
pub struct Opened {
    pub resumed: bool,
    /// Frames of a dead capture's RAM ring written before this session.
    pub recovered: Option<Recovered>,
    /// Why a stored RAM ring could not be recovered.
    pub recovery_failed: Option<String>,
    /// The RAM ring is in the service manager's descriptor store.
    pub ring_stored: bool,
    /// RAM ring only.
    pub ring: Option<RingSetup>,
    pub persist_mode: String,
}

/// What the session did, after `finish`.
#[derive(Debug)]
pub struct Finished {
    pub summary: Summary,
    pub frames_in_recording: u64,
    pub notifications_dropped: u64,
    pub analyzers_disconnected: u64,
    pub syncs: u64,
    pub worst_sync_ms: f64,
    pub worst_write_ms: f64,
    /// Refusals to reuse a RAM slot not yet persisted (disk behind).
    pub disk_waits: u64,
    /// Writing or syncing the recording failed: what the frames after the
    /// failure are worth is unknown (nothing is claimed durable past it).
    pub storage_failure: Option<String>,
}

pub struct Session {
    rec: RecordingFile,
    store: FrameStore,
    ring: Ring,
    notifier: Arc<Notifier>,
    persister: Option<Persister>,
    counters: Arc<Counters>,
    service: Arc<Notify>,
    ring_stored: bool,
}

/// The recording's geometry for a store that is the recording itself, or
/// the RAM ring's for `Direct`.
fn ring_start(rec: &RecordingFile, kind: StoreKind) -> RingStart {
    match kind {
        StoreKind::File => rec.start,
        StoreKind::Direct => RingStart {
            next_slot: 0,
            ..rec.start
        },
    }
}

/// File slot of the session's frames: `(seq + offset) % n` (see `Ring::slot_offset`).
fn file_slot_offset(rec: &RecordingFile) -> u64 {
    let n = rec.header.layout.slot_count as u64;
    (rec.start.next_slot as u64 % n + n - rec.start.next_sequence % n) % n
}

impl Session {
    /// Open the recording and the store, bind the socket, start persistence.
    pub fn open(mut cfg: SessionConfig) -> Result<(Session, Opened), SessionError> {
        let cfg = &mut cfg;
        let (new, mut rec, resumed) = match &cfg.plan {
            RecordingPlan::Resume { .. } if cfg.output.exists() => {
                (None, recording::resume(&cfg.output)?, true)
            }
            RecordingPlan::Create { header, prealloc }
            | RecordingPlan::Resume {
                create: Some((header, prealloc)),
            } => {
                let new = recording::create(&cfg.output, header, *prealloc)?;
                let rec = clone_recording(new.recording(), &cfg.output)?;
                (Some(new), rec, false)
            }
            RecordingPlan::Resume { create: None } => {
                return Err(RecordingError::Io {
                    path: cfg.output.clone(),
                    error: std::io::ErrorKind::NotFound.into(),
                }
                .into())
            }
        };
        if rec.header.format != cfg.format {
            return Err(SessionError::FormatMismatch {
                path: cfg.output.clone(),
                found: rec.header.format,
                wanted: cfg.format,
            });
        }
        let (mut recovered, mut recovery_failed) = (None, None);
        if let Some(old) = cfg.recover_ring.take() {
            if resumed {
                match direct::recover(&old, &mut rec, cfg.persist.sync) {
                    Ok(r) => recovered = Some(r),
                    Err(e) => recovery_failed = Some(e),
                }
            } else {
                recovery_failed =
                    Some("a RAM ring was handed over, but the recording is new".into());
            }
        }
        let (store, ring_setup) = match cfg.store {
            StoreKind::File => (FrameStore::file(&rec, cfg.copy_by_pwrite)?, None),
            StoreKind::Direct => {
                let (s, setup) = FrameStore::memfd(&rec, cfg.ram_slots)?;
                (s, Some(setup))
            }
        };
        let queue = (cfg.store == StoreKind::Direct).then(|| Queue::new(cfg.ram_slots));
        let ring = Ring::new(
            store.mapping().clone(),
            store.header().clone(),
            ring_start(&rec, cfg.store),
            queue.clone().map(|q| q as Arc<dyn CommitSink>),
        );
        let descriptors = store
            .shared_descriptors()
            .iter()
            .map(File::try_clone)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RecordingError::Io {
                path: cfg.output.clone(),
                error: e,
            })?;
        let notifier = Arc::new(Notifier::bind(NotifierConfig {
            path: cfg.socket.clone(),
            store: descriptors,
            hello: Hello {
                store_kind: match cfg.store {
                    StoreKind::File => STORE_RECORDING_FILE,
                    StoreKind::Direct => STORE_MEMFD_RING,
                },
                layout: store.header().layout,
                format: store.header().format,
                client_id: 0,
                next_sequence: 0,
            },
            progress: ring.progress().clone(),
            stuck_after: cfg.stuck_after,
            access: cfg.access.clone(),
            max_clients: cfg.max_clients,
        })?);
        if let Some(gid) = cfg.group {
            let gid = nix::unistd::Gid::from_raw(gid);
            let chgrp = |p: &Path| nix::unistd::chown(p, None, Some(gid));
            if new.is_some() {
                nix::unistd::fchown(rec.file.as_raw_fd(), None, Some(gid)).map_err(|e| {
                    RecordingError::Io {
                        path: cfg.output.clone(),
                        error: e.into(),
                    }
                })?;
            }
            chgrp(&cfg.socket).map_err(|e| {
                SessionError::Socket(NotifyError::Socket {
                    path: cfg.socket.clone(),
                    error: e.into(),
                })
            })?;
        }
        // Everything that can fail before recording has succeeded: only now
        // does a new recording appear at its path.
        let rec = match new {
            Some(new) => {
                drop(rec);
                new.publish()?
            }
            None => rec,
        };
        let persister = start_persister(cfg, &rec, &store, &ring, &notifier, queue)?;
        // Replace the ring in the service manager's store (a restart after a
        // crash hands it back). Best effort: without it a crash loses the
        // frames not yet written, as documented.
        let ring_stored = match store.ring_memfd() {
            Some(memfd) if cfg.service.enabled() => {
                let _ = cfg
                    .service
                    .send(&format!("FDSTOREREMOVE=1\nFDNAME={RING_FD_NAME}"));
                cfg.service
                    .send_with_fds(
                        &format!("FDSTORE=1\nFDNAME={RING_FD_NAME}"),
                        &[std::os::fd::AsFd::as_fd(memfd)],
                    )
                    .is_ok()
            }
            _ => false,
        };
        let opened = Opened {
            resumed,
            recovered,
            recovery_failed,
            ring_stored,
            ring: ring_setup,
            persist_mode: persister.mode().to_string(),
        };
        Ok((
            Session {
                rec,
                store,
                ring,
                notifier,
                persister: Some(persister),
                counters: Arc::new(Counters::default()),
                service: cfg.service.clone(),
                ring_stored,
            },
            opened,
        ))
    }

    pub fn header(&self) -> &Header {
        &self.rec.header
    }

    /// The live store's layout (the RAM ring's for `Direct`).
    pub fn live_layout(&self) -> Layout {
        self.store.header().layout
    }

    pub fn store(&self) -> &FrameStore {
        &self.store
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    pub fn progress(&self) -> &Arc<Progress> {
        self.ring.progress()
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    pub fn persist_stats(&self) -> Option<&Arc<PersistStats>> {
        self.persister.as_ref().map(|p| p.stats())
    }

    pub fn path(&self) -> &Path {
        &self.rec.path
    }

    /// Run the capture loop until a limit, `stop`, a full recording, a
    /// source error or a storage failure.
    pub fn run(
        &mut self,
        source: &mut dyn FrameSource,
        limits: Limits,
        stop: &AtomicBool,
        on_frame: Option<&(dyn Fn() + Sync)>,
    ) -> Summary {
        let persist = self.persister.as_ref().map(|p| p.stats().clone());
        capture::run(
            source,
            &mut self.ring,
            LoopContext {
                notifier: Some(&self.notifier),
                limits,
                stop,
                counters: &self.counters,
                persist: persist.as_deref(),
                on_frame,
            },
        )
    }

    /// Persist and sync everything committed, tell analyzers the stream
    /// ended, remove the socket. A storage failure during the session is
    /// in `Finished::storage_failure`.
    pub fn finish(mut self, summary: Summary) -> Finished {
        let stats = self.persister.as_ref().map(|p| p.stats().clone());
        let persisted = match self.persister.take() {
            Some(p) => p.finish(),
            None => Ok(()),
        };
        let end_reason = if summary.reason.is_error() || persisted.is_err() {
            EndReason::Error
        } else {
            EndReason::Finished
        };
        // Everything is on disk: a restart must not write the ring again.
        if self.ring_stored && persisted.is_ok() {
            let _ = self
                .service
                .send(&format!("FDSTOREREMOVE=1\nFDNAME={RING_FD_NAME}"));
        }
        let frames = self.ring.next_sequence();
        self.notifier.finish(End {
            reason: end_reason,
            frames,
        });
        let ms = |us: u64| us as f64 / 1000.0;
        let load = |f: fn(&PersistStats) -> u64| stats.as_deref().map_or(0, f);
        Finished {
            summary,
            frames_in_recording: frames,
            notifications_dropped: self.notifier.total_dropped(),
            analyzers_disconnected: self.notifier.disconnected(),
            syncs: load(|s| s.syncs.load(Ordering::Relaxed)),
            worst_sync_ms: ms(load(|s| s.worst_sync_us.load(Ordering::Relaxed))),
            worst_write_ms: ms(load(|s| s.worst_write_us.load(Ordering::Relaxed))),
            disk_waits: self.ring.refused_disk_behind(),
            storage_failure: persisted.err(),
        }
    }
}

/// A second handle on a recording being created (the first stays with the
/// `NewRecording`, which removes it if the session never starts).
fn clone_recording(rec: &RecordingFile, path: &Path) -> Result<RecordingFile, RecordingError> {
    Ok(RecordingFile {
        path: rec.path.clone(),
        file: rec.file.try_clone().map_err(|e| RecordingError::Io {
            path: path.to_path_buf(),
            error: e,
        })?,
        header: rec.header.clone(),
        start: rec.start,
    })
}

fn start_persister(
    cfg: &SessionConfig,
    rec: &RecordingFile,
    store: &FrameStore,
    ring: &Ring,
    notifier: &Arc<Notifier>,
    queue: Option<Arc<Queue>>,
) -> Result<Persister, SessionError> {
    let file = rec.file.try_clone().map_err(SessionError::Thread)?;
    let persister = match (cfg.store, queue) {
        (StoreKind::Direct, Some(queue)) => direct::spawn(
            store.mapping().clone(),
            direct::Target {
                file,
                header: rec.header.clone(),
                slot_offset: file_slot_offset(rec),
                sequence_end: ring.sequence_end(),
            },
            ring.progress().clone(),
            queue,
            cfg.persist.clone(),
        ),
        _ => {
            let n = notifier.clone();
            let passed = Box::new(move || {
                n.clients()
                    .iter()
                    .map(|c| c.acked.map_or(0, |a| a.saturating_add(1)))
                    .min()
                    .unwrap_or(u64::MAX)
            });
            writeback::spawn(
                store.mapping().clone(),
                file,
                ring.progress().clone(),
                Placement {
                    slot_offset: ring.slot_offset(),
                    sequence_end: ring.sequence_end(),
                },
                cfg.persist.clone(),
                passed,
            )
        }
    };
    persister.map_err(SessionError::Thread)
}
