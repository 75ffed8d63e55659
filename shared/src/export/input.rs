//! Where exported frames come from: a recording file, or a running
//! capture's live store.
//!
//! A file is read with `pread` and every frame is checked against its
//! CRC32C (record, data, record again), exactly as `verify` does. A running
//! capture is joined as an analyzer (`Subscription`): frames still in its
//! live store are copied out under the slot's seqlock (`snapshot` for the
//! record, `read_frame` + `SlotView::copy_to` for the bytes), so a frame
//! overwritten while it is being copied is reported as overwritten, never
//! returned torn. With a RAM ring (`--store direct`) the recording file
//! behind it (`Subscription::archive`) supplies the older frames, and any
//! frame the ring has reused meanwhile, since the ring hands a slot back
//! only once its frame is in the file.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::format::{generation_state, FrameMeta, GenerationState, Header};
use crate::recording::{RecordingReader, SlotStatus};
use crate::subscribe::{SubscribeError, Subscription};

use super::ExportError;

/// Whether to join a running capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    /// If a capture serves the recording (its socket answers), read its
    /// live store; otherwise read the file.
    Auto,
    /// Read a running capture's live store; fail if there is none.
    Always,
    /// Read the file only.
    Never,
}

/// Where a candidate frame sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// A slot of the recording file (offline, or the archive behind a ring).
    File { slot: u32 },
    /// A slot of the live store, holding `generation` when it was listed.
    Live { slot: u32, generation: u64 },
}

/// A frame the index says is there; its data is checked when it is read.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    /// From the index record: not yet checked for a file (the CRC covers it
    /// and is checked on reading); a consistent snapshot for the live store.
    pub meta: FrameMeta,
    loc: Loc,
}

/// What reading a candidate found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Got {
    /// The bytes are in the buffer; the checked metadata.
    Valid(FrameMeta),
    /// Checksum mismatch (torn by a power cut, or damaged).
    Corrupt,
    /// Claimed but never committed (in flight at a crash).
    Incomplete,
    /// Capture reused the slot before (or while) it was read.
    Overwritten,
    /// The writer kept changing the slot while it was read.
    Busy,
}

/// The frames to export from.
pub struct Input {
    kind: Kind,
    header: Header,
    describe: String,
    /// RAM ring: the archive's slots by sequence, built at the first miss.
    archive_index: Option<HashMap<u64, u32>>,
}

enum Kind {
    File(RecordingReader),
    Live(Box<Subscription>),
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// `FILE.sock`: where capture's socket is by default.
pub fn socket_beside(recording: &Path) -> PathBuf {
    let mut s = recording.as_os_str().to_owned();
    s.push(".sock");
    PathBuf::from(s)
}

impl Input {
    /// Open what `target` names: a recording file, or capture's socket.
    /// `socket` overrides where capture's socket is (default: the target
    /// itself if it is a socket, else `TARGET.sock`). With `Live::Auto` a
    /// recording whose capture is running is read live; a socket that does
    /// not answer (capture ended) means the file is read.
    pub fn open(
        target: &Path,
        socket: Option<&Path>,
        live: Live,
        idle: Duration,
    ) -> Result<Input, ExportError> {
        let target_is_socket = is_socket(target);
        let sock = match socket {
            Some(s) => s.to_path_buf(),
            None if target_is_socket => target.to_path_buf(),
            None => socket_beside(target),
        };
        let want_live = match live {
            Live::Always => true,
            Live::Never => false,
            Live::Auto => target_is_socket || socket.is_some() || is_socket(&sock),
        };
        if want_live {
            match Subscription::connect(&sock, idle) {
                Ok(sub) => return Ok(Input::live(sub)),
                // A socket left behind by a capture that has ended.
                Err(SubscribeError::Connect { .. })
                    if live == Live::Auto && !target_is_socket && socket.is_none() => {}
                Err(e) => return Err(e.into()),
            }
        }
        if target_is_socket {
            return Err(ExportError::Usage(format!(
                "{} is a socket; with --offline, name the recording file",
                target.display()
            )));
        }
        let reader = RecordingReader::open(target)?;
        Ok(Input {
            header: reader.header().clone(),
            describe: format!("recording {}", target.display()),
            kind: Kind::File(reader),
            archive_index: None,
        })
    }

    fn live(sub: Subscription) -> Input {
        let describe = if sub.archive().is_some() {
            "running capture: its RAM ring, older frames from the recording"
        } else {
            "running capture: the recording it maps"
        };
        Input {
            header: sub.live().header().clone(),
            describe: describe.to_string(),
            kind: Kind::Live(Box::new(sub)),
            archive_index: None,
        }
    }

    /// The store's header: frame format and interval (for a RAM ring, its
    /// own slot count).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Where the frames come from, in words.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The recording file, when it is read directly (offline).
    pub fn path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::File(r) => Some(r.path()),
            Kind::Live(_) => None,
        }
    }

    pub fn is_live(&self) -> bool {
        matches!(self.kind, Kind::Live(_))
    }

    fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
        move |source| ExportError::Read {
            path: path.to_path_buf(),
            source,
        }
    }

    fn file_candidates(reader: &RecordingReader) -> Result<Vec<Candidate>, ExportError> {
        let records = reader.records().map_err(Self::read_err(reader.path()))?;
        Ok(records
            .into_iter()
            .filter(|(_, r)| generation_state(r.generation) == GenerationState::Committed)
            .map(|(slot, r)| Candidate {
                meta: r.meta,
                loc: Loc::File { slot },
            })
            .collect())
    }

    /// Every frame the index (or the live store) lists, in sequence order;
    /// for one sequence, a live slot comes before a file slot.
    pub fn candidates(&self) -> Result<Vec<Candidate>, ExportError> {
        let mut out = match &self.kind {
            Kind::File(reader) => Self::file_candidates(reader)?,
            Kind::Live(sub) => {
                let live = sub.live();
                let mut v: Vec<Candidate> = (0..live.slot_count())
                    .filter_map(|slot| {
                        let s = live.snapshot(slot)?;
                        (generation_state(s.generation) == GenerationState::Committed).then_some(
                            Candidate {
                                meta: s.meta,
                                loc: Loc::Live {
                                    slot,
                                    generation: s.generation,
                                },
                            },
                        )
                    })
                    .collect();
                if let Some(archive) = sub.archive() {
                    v.extend(Self::file_candidates(archive)?);
                }
                v
            }
        };
        out.sort_by_key(|c| (c.meta.sequence, matches!(c.loc, Loc::File { .. })));
        Ok(out)
    }

    /// The newest frame that reads valid (for times relative to it).
    pub fn newest(
        &mut self,
        cands: &[Candidate],
        buf: &mut Vec<u8>,
    ) -> Result<Option<FrameMeta>, ExportError> {
        for c in cands.iter().rev() {
            if let Loc::Live { .. } = c.loc {
                // A consistent snapshot of capture's own committed record.
                return Ok(Some(c.meta));
            }
            if let Got::Valid(m) = self.read(c, buf)? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    /// Read a candidate's bytes into `buf`.
    pub fn read(&mut self, c: &Candidate, buf: &mut Vec<u8>) -> Result<Got, ExportError> {
        let seq = c.meta.sequence;
        match (&self.kind, c.loc) {
            (Kind::File(reader), Loc::File { slot }) => read_file(reader, slot, seq, buf),
            (Kind::Live(sub), Loc::File { slot }) => match sub.archive() {
                Some(a) => read_file(a, slot, seq, buf),
                None => Ok(Got::Overwritten),
            },
            (Kind::Live(sub), Loc::Live { slot, generation }) => {
                let read = sub
                    .live()
                    .read_frame(slot, generation, c.meta.bytes_used, |view| {
                        buf.resize(view.len(), 0);
                        view.copy_to(0, buf)
                    });
                match read {
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(Got::Valid(c.meta))
                    }
                    // The ring moved on: the frame is in the recording by now.
                    Err(_) => self.read_from_archive(seq, buf),
                }
            }
            (Kind::File(_), Loc::Live { .. }) => Ok(Got::Overwritten),
        }
    }

    /// A frame the RAM ring has reused, from the recording behind it.
    fn read_from_archive(&mut self, seq: u64, buf: &mut Vec<u8>) -> Result<Got, ExportError> {
        let Kind::Live(sub) = &self.kind else {
            return Ok(Got::Overwritten);
        };
        let Some(archive) = sub.archive() else {
            return Ok(Got::Overwritten);
        };
        for attempt in 0..2 {
            if attempt == 1 || self.archive_index.is_none() {
                let index = Self::file_candidates(archive)?
                    .into_iter()
                    .filter_map(|c| match c.loc {
                        Loc::File { slot } => Some((c.meta.sequence, slot)),
                        Loc::Live { .. } => None,
                    })
                    .collect();
                self.archive_index = Some(index);
            }
            if let Some(&slot) = self.archive_index.as_ref().and_then(|i| i.get(&seq)) {
                if let Got::Valid(m) = read_file(archive, slot, seq, buf)? {
                    return Ok(Got::Valid(m));
                }
            }
        }
        Ok(Got::Overwritten)
    }
}

fn read_file(
    reader: &RecordingReader,
    slot: u32,
    seq: u64,
    buf: &mut Vec<u8>,
) -> Result<Got, ExportError> {
    // A live file's writer may be on the slot: try a few times.
    for _ in 0..3 {
        let status = reader
            .read_frame(slot, buf)
            .map_err(Input::read_err(reader.path()))?;
        return Ok(match status {
            SlotStatus::Valid(m) if m.sequence == seq => Got::Valid(m),
            SlotStatus::Valid(_) | SlotStatus::Empty => Got::Overwritten,
            SlotStatus::Corrupt { .. } => Got::Corrupt,
            SlotStatus::Incomplete { .. } => Got::Incomplete,
            SlotStatus::Busy => continue,
        });
    }
    Ok(Got::Busy)
}
