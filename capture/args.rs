//! The command line, in the words of `v4l2-ctl` and ffmpeg users.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use pagecam::format::Interval;
use pagecam::source::v4l2::IoMode;
use pagecam::units;

#[derive(Parser, Debug)]
#[command(
    name = "pagecam-capture",
    version,
    about = "Record a camera (or the built-in test source) into a pre-allocated recording; \
             analyzers read the frames in place.",
    after_help = "Examples:\n  \
        pagecam-capture -o cam.pcam                                  # 640x480 test source, 256 MiB loop\n  \
        pagecam-capture -d /dev/video0 --format YUYV --size 1280x720 --fps 30 -o cam.pcam --capacity 2G\n  \
        pagecam-capture --list-devices\n  \
        pagecam-capture -d /dev/video0 --list-formats\n\
        Then, in another terminal: pagecam-analyzer watch cam.pcam"
)]
pub struct Args {
    /// Recording file to create (must not exist, unless --resume).
    #[arg(short, long, value_name = "FILE", required_unless_present_any = ["list_devices", "list_formats"])]
    pub output: Option<PathBuf>,

    /// The camera: a V4L2 device such as /dev/video0, or `test` for the
    /// built-in moving test pattern.
    #[arg(
        short = 'd',
        long = "device",
        visible_alias = "source",
        default_value = "test",
        help_heading = "Source"
    )]
    pub device: String,
    /// List V4L2 devices (driver, card, bus, capabilities) and exit.
    #[arg(long, help_heading = "Source")]
    pub list_devices: bool,
    /// List the formats, frame sizes and frame rates of a device (default:
    /// the one given with -d) and exit.
    #[arg(long, value_name = "DEVICE", num_args = 0..=1, default_missing_value = "", help_heading = "Source")]
    pub list_formats: Option<String>,
    /// Pixel format: a fourcc (YUYV, NV12, GREY, RGB3, MJPG, …) or its
    /// ffmpeg name (yuyv422, rgb24, gray, i420, mjpeg, …), any case.
    /// [default: YUYV for the test source; the device's current format]
    #[arg(long, value_parser = units::parse_pixel_format, help_heading = "Source")]
    pub format: Option<u32>,
    /// Frame size WIDTHxHEIGHT (or 480p, 720p, 1080p).
    /// [default: 640x480 for the test source; the device's current size]
    #[arg(long, value_parser = parse_geometry, help_heading = "Source")]
    pub size: Option<(u32, u32)>,
    /// Frame rate: 30, 29.97 or 30000/1001 (test source: 0 = as fast as
    /// possible). [default: 30 for the test source; the device's current rate]
    #[arg(long, value_parser = parse_rate_arg, help_heading = "Source")]
    pub fps: Option<Rate>,
    /// V4L2 I/O: `userptr` (the driver writes into pagecam's memory: zero
    /// copies), `mmap` (driver buffers, one copy per frame), or `auto`
    /// (userptr, falling back to mmap when the driver refuses, and saying so).
    #[arg(long, default_value = "auto", help_heading = "Source")]
    pub io: IoMode,
    /// V4L2 buffers to request from the driver.
    #[arg(long, default_value_t = 4, help_heading = "Source")]
    pub buffers: u32,
    /// Give up with an error if the device delivers no frame for this long.
    #[arg(long, value_parser = units::parse_duration, default_value = "2s", help_heading = "Source")]
    pub frame_timeout: Duration,
    /// Set a V4L2 control before streaming, by its v4l2-ctl name
    /// (e.g. --ctrl test_pattern=0); repeatable.
    #[arg(long = "ctrl", value_name = "NAME=VALUE", value_parser = parse_ctrl, help_heading = "Source")]
    pub controls: Vec<(String, i64)>,
    /// Test source only: render into pagecam's memory like a USERPTR driver
    /// (`direct`), or into a buffer of its own that is copied once, like
    /// V4L2 MMAP (`copy`).
    #[arg(long, value_enum, default_value_t = DeliveryArg::Direct, help_heading = "Source")]
    pub delivery: DeliveryArg,
    /// Test source only: what it shows, as scenes and frame counts,
    /// repeated: `moving` (default), or e.g. `moving:90,black:30,frozen:90,soft:30`
    /// (black: a black picture; frozen: one picture repeated; soft: a still,
    /// smooth, out-of-focus ramp) — to try the analyzer's detectors.
    #[arg(long, value_parser = pagecam::source::pattern::Script::parse, help_heading = "Source")]
    pub pattern: Option<pagecam::source::pattern::Script>,

    /// Size of the recording, as dd reads sizes: 256M and 2G are MiB and
    /// GiB, 500MB is 10^6 bytes (unless --slots or --ring-seconds).
    #[arg(long, value_parser = units::parse_bytes, default_value = "256M", help_heading = "Recording")]
    pub capacity: u64,
    /// Number of frames the recording holds (instead of --capacity).
    #[arg(long, help_heading = "Recording")]
    pub slots: Option<u32>,
    /// Make the recording hold this many seconds at the frame rate
    /// (instead of --capacity).
    #[arg(long, help_heading = "Recording")]
    pub ring_seconds: Option<u32>,
    /// When the recording is full: `wrap` overwrites the oldest frames (a
    /// loop recording: the last N seconds are always there), `stop` ends.
    #[arg(long, value_enum, default_value_t = OnFullArg::Wrap, help_heading = "Recording")]
    pub on_full: OnFullArg,
    /// Continue an existing recording after its newest valid frame, with a
    /// new session number (format and size come from the file); creates it
    /// if it does not exist yet (so a service can always pass --resume).
    #[arg(long, help_heading = "Recording")]
    pub resume: bool,
    /// How to reserve the file's blocks: `fallocate` (instant) or `zero`
    /// (write the whole file once: afterwards recording changes no
    /// filesystem metadata at all).
    #[arg(long, value_enum, default_value_t = PreallocArg::Fallocate, help_heading = "Recording")]
    pub prealloc: PreallocArg,
    /// Frames older than this survive a power cut.
    #[arg(long, value_parser = units::parse_duration, default_value = "1s", help_heading = "Recording")]
    pub max_loss: Duration,

    /// Where live frames are kept. `direct`: a small sealed RAM ring that
    /// the driver fills and that is written to the recording with O_DIRECT
    /// from the same pages (no copies, no page faults, no page cache, on
    /// every kernel; measured cheapest, see the README). `file`: the
    /// recording file's own mapping, the page cache being the frame store
    /// (the design documents' store; faults once per page after each
    /// writeback).
    #[arg(long, value_enum, default_value_t = StoreArg::Direct, help_heading = "Store")]
    pub store: StoreArg,
    /// `--store direct`: size of the RAM ring, as a duration at the frame
    /// rate (500ms, 2s) or a number of frames (16). It bounds the memory
    /// used and how long the disk may stall before frames are dropped.
    #[arg(long, default_value = "500ms", value_parser = parse_ring, help_heading = "Store")]
    pub ram_ring: RingSize,
    /// `--store direct`: make frames durable by an fdatasync every
    /// --max-loss/2 (`cadence`) or by writing with O_DSYNC (`dsync`:
    /// durable as soon as written, in order).
    #[arg(long, value_enum, default_value_t = SyncArg::Cadence, help_heading = "Store")]
    pub sync: SyncArg,
    /// `--store file`, when frames are copied (MMAP, --delivery copy): copy
    /// through the mapping (`map`) or with pwrite into the page cache
    /// (`pwrite`: no page faults on write-protected pages).
    #[arg(long, value_enum, default_value_t = CopyArg::Map, help_heading = "Store")]
    pub copy_into: CopyArg,
    /// `--store file`: drop frames from the page cache once on disk and
    /// read by every analyzer (bounds memory on small boards).
    #[arg(long, help_heading = "Store")]
    pub drop_cache: bool,
    /// `--store file`: do not prefault upcoming slots (for measurements).
    #[arg(long, help_heading = "Store")]
    pub no_prefault: bool,
    /// `--store file`: do not start writeback of finished slots (for
    /// measurements: durability is then left to the kernel).
    #[arg(long, help_heading = "Store")]
    pub no_writeback: bool,

    /// Unix socket analyzers connect to [default: OUTPUT.sock].
    #[arg(long, value_name = "PATH", help_heading = "Analyzers")]
    pub socket: Option<PathBuf>,
    /// Disconnect an analyzer whose socket has stayed full this long.
    #[arg(long, value_parser = units::parse_duration, default_value = "5s", help_heading = "Analyzers")]
    pub stuck_timeout: Duration,
    /// Give a new recording and the socket this group: its members may
    /// read the recording and connect as analyzers, nobody else may
    /// (recordings are 0640, sockets 0660). [default: capture's own group]
    #[arg(long, value_name = "GROUP", help_heading = "Analyzers")]
    pub group: Option<String>,
    /// Also let this user connect as an analyzer (repeatable); root and
    /// capture's own user always may.
    #[arg(long = "allow-user", value_name = "USER", help_heading = "Analyzers")]
    pub allow_users: Vec<String>,
    /// Serve at most this many analyzers at once (more are refused).
    #[arg(long, default_value_t = 64, help_heading = "Analyzers")]
    pub max_analyzers: usize,

    /// Stop after this many frames.
    #[arg(long, help_heading = "When to stop")]
    pub frames: Option<u64>,
    /// Stop after this long: 10 (seconds), 00:01:30, 500ms, 2min.
    #[arg(short = 't', long, value_parser = units::parse_duration, help_heading = "When to stop")]
    pub duration: Option<Duration>,

    /// Print the final summary as one JSON object on stdout (for scripts).
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// How often the status line is printed (a terminal: in place).
    #[arg(long, value_parser = units::parse_duration, default_value = "1s", help_heading = "Output")]
    pub status_interval: Duration,
}

/// A frame rate from the command line; `None` inside: as fast as possible.
#[derive(Clone, Copy, Debug)]
pub struct Rate(pub Option<Interval>);

fn parse_rate_arg(s: &str) -> Result<Rate, String> {
    units::parse_rate(s).map(Rate)
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StoreArg {
    Direct,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CopyArg {
    Map,
    Pwrite,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SyncArg {
    Cadence,
    Dsync,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DeliveryArg {
    Direct,
    Copy,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PreallocArg {
    Fallocate,
    Zero,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OnFullArg {
    Wrap,
    Stop,
}

#[derive(Clone, Copy, Debug)]
pub enum RingSize {
    Frames(u32),
    Time(Duration),
}

fn parse_ring(s: &str) -> Result<RingSize, String> {
    if let Ok(n) = s.parse::<u32>() {
        return if n == 0 {
            Err("the RAM ring needs at least one frame".into())
        } else {
            Ok(RingSize::Frames(n))
        };
    }
    units::parse_duration(s)
        .map(RingSize::Time)
        .map_err(|e| format!("{e}, or a number of frames"))
}

pub fn parse_geometry(s: &str) -> Result<(u32, u32), String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "vga" | "480p" => return Ok((640, 480)),
        "720p" => return Ok((1280, 720)),
        "1080p" => return Ok((1920, 1080)),
        _ => {}
    }
    let bad = || format!("'{s}' is not a frame size (e.g. 1280x720 or 720p)");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    ))
}

fn parse_ctrl(s: &str) -> Result<(String, i64), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    let v = v
        .trim()
        .parse()
        .map_err(|_| format!("control value '{v}' is not an integer"))?;
    Ok((k.trim().to_string(), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_has_help() {
        use clap::CommandFactory;
        let cmd = Args::command();
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(a.get_help().is_some(), "--{id} has no help text");
        }
    }

    #[test]
    fn words_users_know() {
        let a = Args::try_parse_from([
            "pagecam-capture",
            "-d",
            "/dev/video0",
            "--format",
            "rgb24",
            "--size",
            "720p",
            "--fps",
            "30000/1001",
            "-t",
            "00:00:10",
            "--capacity",
            "256M",
            "-o",
            "x.pcam",
        ])
        .unwrap();
        assert_eq!(a.device, "/dev/video0");
        assert_eq!(a.size, Some((1280, 720)));
        assert_eq!(a.capacity, 256 << 20);
        assert_eq!(a.duration, Some(Duration::from_secs(10)));
        let a = Args::try_parse_from(["pagecam-capture", "-d", "/dev/video2", "--list-formats"])
            .unwrap();
        assert_eq!(a.list_formats.as_deref(), Some(""));
    }
}
