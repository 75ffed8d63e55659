//! Read-only questions to V4L2 devices: which devices exist, what they
//! can do, which formats, sizes and frame rates they offer, which controls
//! they have. Vocabulary follows `v4l2-ctl` (`--list-devices`,
//! `--list-formats-ext`, `--set-ctrl` names).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::sys::{self, abi::*, Zeroable};
use crate::format::{fourcc_str, Interval};
use crate::source::SourceError;

/// One `/dev/video*` node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub path: PathBuf,
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    /// The node's own capabilities (`device_caps`), `V4L2_CAP_*` bits.
    pub capabilities: u32,
    /// Single-planar video capture (`V4L2_CAP_VIDEO_CAPTURE`).
    pub capture: bool,
    /// Multi-planar video capture (`V4L2_CAP_VIDEO_CAPTURE_MPLANE`).
    pub capture_mplane: bool,
    /// Streaming I/O (`V4L2_CAP_STREAMING`): needed by pagecam.
    pub streaming: bool,
    /// Why the node could not be queried (then the fields above are empty).
    pub error: Option<String>,
}

impl DeviceInfo {
    /// Can pagecam capture from this node?
    pub fn usable(&self) -> bool {
        self.error.is_none() && (self.capture || self.capture_mplane) && self.streaming
    }

    fn from_caps(path: &Path, caps: &v4l2_capability) -> Self {
        let c = if caps.capabilities & V4L2_CAP_DEVICE_CAPS != 0 {
            caps.device_caps
        } else {
            caps.capabilities
        };
        DeviceInfo {
            path: path.to_path_buf(),
            driver: sys::c_text(&caps.driver),
            card: sys::c_text(&caps.card),
            bus_info: sys::c_text(&caps.bus_info),
            capabilities: c,
            capture: c & V4L2_CAP_VIDEO_CAPTURE != 0,
            capture_mplane: c & V4L2_CAP_VIDEO_CAPTURE_MPLANE != 0,
            streaming: c & V4L2_CAP_STREAMING != 0,
            error: None,
        }
    }

    /// `"vivid 'vivid' /dev/video0 (platform:vivid-000)"`.
    pub fn describe(&self) -> String {
        format!(
            "{} '{}' {} ({})",
            self.driver,
            self.card,
            self.path.display(),
            self.bus_info
        )
    }
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = &self.error {
            return write!(f, "{}: {e}", self.path.display());
        }
        write!(
            f,
            "{}: {}",
            self.describe(),
            capability_names(self.capabilities)
        )
    }
}

/// The capability bits pagecam cares about, by name.
pub fn capability_names(caps: u32) -> String {
    let names = [
        (V4L2_CAP_VIDEO_CAPTURE, "video-capture"),
        (V4L2_CAP_VIDEO_CAPTURE_MPLANE, "video-capture-mplane"),
        (V4L2_CAP_VIDEO_OUTPUT, "video-output"),
        (V4L2_CAP_VIDEO_OUTPUT_MPLANE, "video-output-mplane"),
        (V4L2_CAP_VIDEO_M2M, "video-m2m"),
        (V4L2_CAP_VIDEO_M2M_MPLANE, "video-m2m-mplane"),
        (V4L2_CAP_VBI_CAPTURE, "vbi-capture"),
        (V4L2_CAP_SDR_CAPTURE, "sdr-capture"),
        (V4L2_CAP_META_CAPTURE, "metadata-capture"),
        (V4L2_CAP_TOUCH, "touch"),
        (V4L2_CAP_RADIO, "radio"),
        (V4L2_CAP_READWRITE, "read/write"),
        (V4L2_CAP_STREAMING, "streaming"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| caps & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "no capabilities".into()
    } else {
        v.join(", ")
    }
}

/// Open a V4L2 node read-write and non-blocking (std opens with O_CLOEXEC,
/// so children never inherit the device).
pub(super) fn open_device(path: &Path) -> Result<File, SourceError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            let message = match e.kind() {
                io::ErrorKind::NotFound => "does not exist (no such device)".to_string(),
                io::ErrorKind::PermissionDenied => {
                    "permission denied (is the user in the 'video' group?)".to_string()
                }
                _ => format!("cannot open: {}", sys::ioctl_error("open", &e)),
            };
            SourceError::Device {
                path: path.display().to_string(),
                message,
            }
        })
}

/// QUERYCAP on an open node.
pub(super) fn query(path: &Path, fd: BorrowedFd<'_>) -> Result<DeviceInfo, SourceError> {
    let mut caps = v4l2_capability::zeroed();
    sys::querycap(fd, &mut caps).map_err(|e| SourceError::Device {
        path: path.display().to_string(),
        message: if e.raw_os_error() == Some(libc::ENOTTY) {
            "not a V4L2 device".into()
        } else {
            sys::ioctl_error("QUERYCAP", &e)
        },
    })?;
    Ok(DeviceInfo::from_caps(path, &caps))
}

/// Every `/dev/video*` node, in number order. Nodes that cannot be opened
/// or queried are listed with `error` set.
pub fn list_devices() -> Vec<DeviceInfo> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name.strip_prefix("video")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes
        .into_iter()
        .map(|(_, path)| {
            let info = open_device(&path).and_then(|f| query(&path, f.as_fd()));
            info.unwrap_or_else(|e| DeviceInfo {
                path: path.clone(),
                driver: String::new(),
                card: String::new(),
                bus_info: String::new(),
                capabilities: 0,
                capture: false,
                capture_mplane: false,
                streaming: false,
                error: Some(match e {
                    SourceError::Device { message, .. } => message,
                    other => other.to_string(),
                }),
            })
        })
        .collect()
}

/// A frame size as `VIDIOC_ENUM_FRAMESIZES` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameSizes {
    Discrete {
        width: u32,
        height: u32,
    },
    /// Stepwise or continuous (step 1).
    Stepwise {
        min_width: u32,
        max_width: u32,
        step_width: u32,
        min_height: u32,
        max_height: u32,
        step_height: u32,
    },
}

impl fmt::Display for FrameSizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameSizes::Discrete { width, height } => write!(f, "Discrete {width}x{height}"),
            FrameSizes::Stepwise {
                min_width: w0,
                max_width: w1,
                step_width: ws,
                min_height: h0,
                max_height: h1,
                step_height: hs,
            } => write!(f, "Stepwise {w0}x{h0} - {w1}x{h1} with step {ws}/{hs}"),
        }
    }
}

/// Frame intervals as `VIDIOC_ENUM_FRAMEINTERVALS` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameIntervals {
    Discrete(Interval),
    /// Stepwise or continuous.
    Stepwise {
        min: Interval,
        max: Interval,
        step: Interval,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeInfo {
    pub size: FrameSizes,
    /// Only enumerated for discrete sizes (as `v4l2-ctl` does).
    pub intervals: Vec<FrameIntervals>,
}

/// One pixel format a device offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatInfo {
    pub fourcc: u32,
    pub description: String,
    pub compressed: bool,
    /// Offered on the multi-planar buffer type.
    pub mplane: bool,
    pub sizes: Vec<SizeInfo>,
}

fn interval_text(i: &Interval) -> String {
    if i.numerator == 0 || i.denominator == 0 {
        return format!("{}/{}", i.numerator, i.denominator);
    }
    format!(
        "{:.3}s ({:.3} fps)",
        i.numerator as f64 / i.denominator as f64,
        i.fps()
    )
}

/// `v4l2-ctl --list-formats-ext` layout, one format with its sizes.
impl fmt::Display for FormatInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' ({}", fourcc_str(self.fourcc), self.description)?;
        if self.compressed {
            write!(f, ", compressed")?;
        }
        writeln!(f, ")")?;
        for s in &self.sizes {
            writeln!(f, "\tSize: {}", s.size)?;
            for i in &s.intervals {
                match i {
                    FrameIntervals::Discrete(i) => {
                        writeln!(f, "\t\tInterval: Discrete {}", interval_text(i))?
                    }
                    FrameIntervals::Stepwise { min, max, step } => writeln!(
                        f,
                        "\t\tInterval: Stepwise {} - {} with step {}",
                        interval_text(min),
                        interval_text(max),
                        interval_text(step)
                    )?,
                }
            }
        }
        Ok(())
    }
}

/// The capture buffer type a node uses: single-planar if it has it.
pub(super) fn capture_type(info: &DeviceInfo) -> u32 {
    if info.capture {
        v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE
    } else {
        v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE
    }
}

/// (fourcc, description, flags) of every format of `buf_type`.
pub(super) fn enum_formats(fd: BorrowedFd<'_>, buf_type: u32) -> Vec<(u32, String, u32)> {
    let mut out = Vec::new();
    for index in 0.. {
        let mut d = v4l2_fmtdesc::zeroed();
        d.index = index;
        d.type_ = buf_type;
        if sys::enum_fmt(fd, &mut d).is_err() {
            break;
        }
        out.push((d.pixelformat, sys::c_text(&d.description), d.flags));
    }
    out
}

fn interval_of(f: v4l2_fract) -> Interval {
    Interval {
        numerator: f.numerator,
        denominator: f.denominator,
    }
}

/// One answer of VIDIOC_ENUM_FRAMEINTERVALS, by its `type`; `None` for a
/// type this code does not know (a newer kernel's), which ends the list.
#[allow(non_upper_case_globals)] // bindgen's names for the enum's values
fn frame_intervals(e: &v4l2_frmivalenum) -> Option<FrameIntervals> {
    match e.type_ {
        v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_DISCRETE => {
            // SAFETY: for DISCRETE the kernel filled the `discrete` member
            // (frmival.rst); both members are plain integers, valid for any
            // bits.
            let d = unsafe { e.__bindgen_anon_1.discrete };
            Some(FrameIntervals::Discrete(interval_of(d)))
        }
        v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_CONTINUOUS
        | v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_STEPWISE => {
            // SAFETY: for CONTINUOUS and STEPWISE the kernel filled
            // `stepwise` (frmival.rst); plain integers.
            let s = unsafe { e.__bindgen_anon_1.stepwise };
            Some(FrameIntervals::Stepwise {
                min: interval_of(s.min),
                max: interval_of(s.max),
                step: interval_of(s.step),
            })
        }
        _ => None,
    }
}

/// One answer of VIDIOC_ENUM_FRAMESIZES, by its `type`; `None` for a type
/// this code does not know, which ends the list.
#[allow(non_upper_case_globals)] // bindgen's names for the enum's values
fn frame_sizes(e: &v4l2_frmsizeenum) -> Option<FrameSizes> {
    match e.type_ {
        v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_DISCRETE => {
            // SAFETY: for DISCRETE the kernel filled the `discrete` member
            // (framesizes.rst); both members are plain integers, valid for
            // any bits.
            let d = unsafe { e.__bindgen_anon_1.discrete };
            Some(FrameSizes::Discrete {
                width: d.width,
                height: d.height,
            })
        }
        v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_CONTINUOUS
        | v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_STEPWISE => {
            // SAFETY: for CONTINUOUS and STEPWISE the kernel filled
            // `stepwise` (framesizes.rst); plain integers.
            let s = unsafe { e.__bindgen_anon_1.stepwise };
            Some(FrameSizes::Stepwise {
                min_width: s.min_width,
                max_width: s.max_width,
                step_width: s.step_width,
                min_height: s.min_height,
                max_height: s.max_height,
                step_height: s.step_height,
            })
        }
        _ => None,
    }
}

fn enum_intervals(fd: BorrowedFd<'_>, fourcc: u32, width: u32, height: u32) -> Vec<FrameIntervals> {
    let mut out = Vec::new();
    for index in 0.. {
        let mut e = v4l2_frmivalenum::zeroed();
        e.index = index;
        e.pixel_format = fourcc;
        e.width = width;
        e.height = height;
        if sys::enum_frameintervals(fd, &mut e).is_err() {
            break;
        }
        match frame_intervals(&e) {
            Some(i @ FrameIntervals::Discrete(_)) => out.push(i),
            Some(i @ FrameIntervals::Stepwise { .. }) => {
                out.push(i);
                break; // a stepwise range is the only entry
            }
            None => break,
        }
    }
    out
}

fn enum_sizes(fd: BorrowedFd<'_>, fourcc: u32) -> Vec<SizeInfo> {
    let mut out = Vec::new();
    for index in 0.. {
        let mut e = v4l2_frmsizeenum::zeroed();
        e.index = index;
        e.pixel_format = fourcc;
        if sys::enum_framesizes(fd, &mut e).is_err() {
            break;
        }
        match frame_sizes(&e) {
            Some(size @ FrameSizes::Discrete { width, height }) => out.push(SizeInfo {
                size,
                intervals: enum_intervals(fd, fourcc, width, height),
            }),
            Some(size @ FrameSizes::Stepwise { .. }) => {
                out.push(SizeInfo {
                    size,
                    intervals: Vec::new(),
                });
                break; // a stepwise range is the only entry
            }
            None => break,
        }
    }
    out
}

/// The formats a capture device offers, with sizes and frame intervals.
pub fn list_formats(path: &Path) -> Result<Vec<FormatInfo>, SourceError> {
    let file = open_device(path)?;
    let info = query(path, file.as_fd())?;
    if !(info.capture || info.capture_mplane) {
        return Err(SourceError::Device {
            path: path.display().to_string(),
            message: format!(
                "not a video capture device ({})",
                capability_names(info.capabilities)
            ),
        });
    }
    let buf_type = capture_type(&info);
    let fd = file.as_fd();
    Ok(enum_formats(fd, buf_type)
        .into_iter()
        .map(|(fourcc, description, flags)| FormatInfo {
            fourcc,
            description,
            compressed: flags & V4L2_FMT_FLAG_COMPRESSED != 0,
            mplane: !info.capture,
            sizes: enum_sizes(fd, fourcc),
        })
        .collect())
}

/// A control name as `v4l2-ctl` spells it: lowercase, each run of
/// non-alphanumeric characters becomes one `_`, none at either end
/// ("Wrap Sequence Number" -> `wrap_sequence_number`).
pub fn control_name(name: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

/// A control found by name.
struct ControlDesc {
    id: u32,
    typ: u32,
    flags: u32,
    minimum: i64,
    maximum: i64,
    dims: u32,
}

/// Every control of the device, by normalised name.
fn controls(fd: BorrowedFd<'_>) -> Vec<(String, ControlDesc)> {
    let mut out = Vec::new();
    let mut q = v4l2_query_ext_ctrl::zeroed();
    q.id = V4L2_CTRL_FLAG_NEXT_CTRL | V4L2_CTRL_FLAG_NEXT_COMPOUND;
    while sys::query_ext_ctrl(fd, &mut q).is_ok() {
        if q.type_ != v4l2_ctrl_type_V4L2_CTRL_TYPE_CTRL_CLASS {
            out.push((
                control_name(&sys::c_chars_text(&q.name)),
                ControlDesc {
                    id: q.id,
                    typ: q.type_,
                    flags: q.flags,
                    minimum: q.minimum,
                    maximum: q.maximum,
                    dims: q.nr_of_dims,
                },
            ));
        }
        let next = q.id | V4L2_CTRL_FLAG_NEXT_CTRL | V4L2_CTRL_FLAG_NEXT_COMPOUND;
        q = v4l2_query_ext_ctrl::zeroed();
        q.id = next;
    }
    out
}

/// Set controls by `v4l2-ctl` name, in order. Returns one note per control.
pub(super) fn set_controls(
    path: &Path,
    fd: BorrowedFd<'_>,
    wanted: &[(String, i64)],
) -> Result<Vec<String>, SourceError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let err = |message: String| SourceError::Device {
        path: path.display().to_string(),
        message,
    };
    let all = controls(fd);
    let mut notes = Vec::new();
    for (name, value) in wanted {
        let key = control_name(name);
        let Some((_, c)) = all.iter().find(|(n, _)| *n == key) else {
            let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
            return Err(err(format!(
                "has no control named '{key}' (it has: {})",
                names.join(", ")
            )));
        };
        let settable = [
            v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER,
            v4l2_ctrl_type_V4L2_CTRL_TYPE_BOOLEAN,
            v4l2_ctrl_type_V4L2_CTRL_TYPE_MENU,
            v4l2_ctrl_type_V4L2_CTRL_TYPE_BUTTON,
            v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER64,
            v4l2_ctrl_type_V4L2_CTRL_TYPE_BITMASK,
            v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER_MENU,
        ];
        if !settable.contains(&c.typ) || c.dims > 0 {
            return Err(err(format!(
                "control '{key}' is not a single number (type {}); cannot set it",
                c.typ
            )));
        }
        if c.flags & (V4L2_CTRL_FLAG_READ_ONLY | V4L2_CTRL_FLAG_DISABLED) != 0 {
            return Err(err(format!("control '{key}' is read-only or disabled")));
        }
        let is64 = c.typ == v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER64;
        if !is64 && i32::try_from(*value).is_err() {
            return Err(err(format!(
                "value {value} does not fit control '{key}' (32-bit)"
            )));
        }
        sys::set_control(fd, c.id, *value, is64).map_err(|e| {
            err(format!(
                "setting control '{key}' to {value} (range {}..={}): {}",
                c.minimum,
                c.maximum,
                sys::ioctl_error("S_EXT_CTRLS", &e)
            ))
        })?;
        notes.push(format!("control {key} = {value}"));
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fract(numerator: u32, denominator: u32) -> v4l2_fract {
        v4l2_fract {
            numerator,
            denominator,
        }
    }

    #[test]
    fn frame_sizes_decode_each_type() {
        let mut e = v4l2_frmsizeenum::zeroed();
        e.type_ = v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_DISCRETE;
        e.__bindgen_anon_1.discrete = v4l2_frmsize_discrete {
            width: 640,
            height: 480,
        };
        assert_eq!(
            frame_sizes(&e),
            Some(FrameSizes::Discrete {
                width: 640,
                height: 480
            })
        );

        let range = v4l2_frmsize_stepwise {
            min_width: 16,
            max_width: 1920,
            step_width: 2,
            min_height: 8,
            max_height: 1080,
            step_height: 4,
        };
        let want = FrameSizes::Stepwise {
            min_width: 16,
            max_width: 1920,
            step_width: 2,
            min_height: 8,
            max_height: 1080,
            step_height: 4,
        };
        for t in [
            v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_STEPWISE,
            v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_CONTINUOUS,
        ] {
            let mut e = v4l2_frmsizeenum::zeroed();
            e.type_ = t;
            e.__bindgen_anon_1.stepwise = range;
            assert_eq!(frame_sizes(&e), Some(want.clone()), "type {t}");
        }
        assert_eq!(want.to_string(), "Stepwise 16x8 - 1920x1080 with step 2/4");

        // Zeroed (type 0) and a type from a future kernel end the list.
        let mut e = v4l2_frmsizeenum::zeroed();
        assert_eq!(frame_sizes(&e), None);
        e.type_ = 4;
        assert_eq!(frame_sizes(&e), None);
    }

    #[test]
    fn frame_intervals_decode_each_type() {
        let mut e = v4l2_frmivalenum::zeroed();
        e.type_ = v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_DISCRETE;
        e.__bindgen_anon_1.discrete = fract(1, 30);
        assert_eq!(
            frame_intervals(&e),
            Some(FrameIntervals::Discrete(Interval {
                numerator: 1,
                denominator: 30
            }))
        );

        let range = v4l2_frmival_stepwise {
            min: fract(1, 60),
            max: fract(1, 1),
            step: fract(1, 120),
        };
        for t in [
            v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_STEPWISE,
            v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_CONTINUOUS,
        ] {
            let mut e = v4l2_frmivalenum::zeroed();
            e.type_ = t;
            e.__bindgen_anon_1.stepwise = range;
            assert_eq!(
                frame_intervals(&e),
                Some(FrameIntervals::Stepwise {
                    min: Interval {
                        numerator: 1,
                        denominator: 60
                    },
                    max: Interval {
                        numerator: 1,
                        denominator: 1
                    },
                    step: Interval {
                        numerator: 1,
                        denominator: 120
                    },
                }),
                "type {t}"
            );
        }

        let mut e = v4l2_frmivalenum::zeroed();
        assert_eq!(frame_intervals(&e), None);
        e.type_ = 4;
        assert_eq!(frame_intervals(&e), None);
    }

    #[test]
    fn control_names_match_v4l2_ctl() {
        assert_eq!(control_name("Wrap Sequence Number"), "wrap_sequence_number");
        assert_eq!(
            control_name("Inject VIDIOC_STREAMON Error"),
            "inject_vidioc_streamon_error"
        );
        assert_eq!(
            control_name("Percentage of Dropped Buffers"),
            "percentage_of_dropped_buffers"
        );
        assert_eq!(
            control_name("Limited RGB Range (16-235)"),
            "limited_rgb_range_16_235"
        );
        assert_eq!(control_name("  Test  Pattern "), "test_pattern");
        assert_eq!(control_name("test_pattern"), "test_pattern");
    }
}
