//! Your own analyzer, in about 80 lines: follow a running capture and, for
//! every frame, read it in place and compute something of your own — here,
//! how much of the picture is strongly red (V chroma of YUYV above 170), a
//! crude "is something red in view" detector — then print one line.
//!
//! ```text
//! # terminal 1: record the built-in test pattern (its bars include red)
//! cargo run --release --bin pagecam-capture -- -o /tmp/cam.pcam --size 640x480
//! # terminal 2: this analyzer
//! cargo run --release -p pagecam --example own_analyzer -- /tmp/cam.pcam.sock
//! ```
//!
//! What it shows: connecting (`Subscription::connect`), waiting for notices
//! (`next_event`), reading the frame where it lies (`read_frame` with a
//! `SlotView`: copy one line at a time into a buffer of your own — the view
//! is only valid inside the closure), and the rule that makes it safe: the
//! result counts only if `read_frame` returns `Ok`; `Overwritten` and
//! `Torn` mean capture reused the slot before or while you read it, and the
//! result must be thrown away.

use std::path::PathBuf;
use std::time::Duration;

use pagecam::format::YUYV;
use pagecam::mapping::SlotReadError;
use pagecam::subscribe::{Event, Subscription};

fn main() {
    let socket: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/cam.pcam.sock"));
    let mut sub = match Subscription::connect(&socket, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("own_analyzer: {e}");
            std::process::exit(4);
        }
    };
    let f = sub.hello().format;
    if f.fourcc != YUYV {
        eprintln!("own_analyzer: this example reads YUYV only");
        std::process::exit(2);
    }
    let (w, h, bpl) = (
        f.width as usize,
        f.height as usize,
        f.bytes_per_line as usize,
    );
    let mut line = vec![0u8; bpl];
    loop {
        let notice = match sub.next_event() {
            Ok(Event::Frame(n)) => n,
            Ok(Event::End(_)) => break,
            Err(pagecam::subscribe::SubscribeError::Interrupted) => continue,
            Err(e) => {
                eprintln!("own_analyzer: {e}");
                std::process::exit(4);
            }
        };
        let red =
            sub.live()
                .read_frame(notice.slot, notice.generation, notice.bytes_used, |view| {
                    let mut red = 0usize;
                    for y in 0..h {
                        // One line into our own buffer, then plain Rust over it.
                        view.copy_to(y * bpl, &mut line);
                        // YUYV: Y0 U Y1 V, so every 4th byte from 3 is V.
                        red += line[..w * 2]
                            .iter()
                            .skip(3)
                            .step_by(4)
                            .filter(|&&v| v > 170)
                            .count();
                    }
                    red as f64 / (w * h / 2) as f64
                });
        match red {
            Ok(fraction) => println!("frame {}: {:.1}% red", notice.sequence, fraction * 100.0),
            // Capture reused the slot before or during our read: the
            // number above would be computed on a mixture of two frames.
            Err(SlotReadError::Overwritten { .. }) | Err(SlotReadError::Torn) => {
                println!("frame {}: overwritten before we were done", notice.sequence)
            }
            Err(e) => println!("frame {}: {e:?}", notice.sequence),
        }
        // Tell capture how far we are (it shows the lag in its status line).
        if notice.sequence % 8 == 0 {
            sub.send_progress(notice.sequence);
        }
    }
}
